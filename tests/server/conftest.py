"""Fixtures for the server tests (helpers live in serverfixtures.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The helpers sit beside this file; test modules import them by name.
sys.path.insert(0, str(Path(__file__).parent))
from serverfixtures import ServerThread

from server.room import RoomConfig


@pytest.fixture
def make_server() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def factory(**overrides: Any) -> ServerThread:
        config = RoomConfig(**{"open_rooms": True, **overrides})
        server = ServerThread(config).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server()
