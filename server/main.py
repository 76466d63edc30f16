"""`neonbar server`: data directory, secret, start, graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from neonbar.errors import UserError
from neonbar.layout import Layout, load_layout
from neonbar.tokens import load_secret
from server.app import serve_forever
from server.room import RoomConfig

log = logging.getLogger("neonbar.server")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # websockets logs every connection at INFO: too chatty with hundreds of bots.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    data_dir = Path(args.data)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the data directory {data_dir}: {exc.strerror}") from None
    layout = load_layout(args.layout)
    secret = load_secret(data_dir)
    config = RoomConfig(
        open_rooms=bool(getattr(args, "open", False)),
        render_scenes=not getattr(args, "no_render", False),
    )
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0-65535, not {args.port}")
    runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    try:
        runner(_serve(args.host, args.port, data_dir, layout, secret, config))
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


async def _serve(
    host: str, port: int, data_dir: Path, layout: Layout, secret: bytes, config: RoomConfig
) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def request_stop(signum: int) -> None:
        if not stop.done():
            log.info("%s received: shutting down", signal.Signals(signum).name)
            stop.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop, signum)

    def on_listening(bound_host: str, bound_port: int) -> None:
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        print(f"listening on ws://{shown}:{bound_port}", flush=True)
        mode = "open (no invite needed)" if config.open_rooms else "invite tokens required"
        log.info("layout %s, data %s, %s", layout.name, data_dir, mode)

    await serve_forever(layout, secret, host, port, data_dir, config, on_listening, stop)
