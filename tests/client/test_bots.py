"""`neonbar bots` against a real server subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib: helpers beside the tests are not on the path.
sys.path.insert(0, str(Path(__file__).parent))
from netfixtures import REPO, free_port, running_server


def bots(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neonbar", "bots", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with running_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv


def test_fifty_bots_see_each_other_at_about_20_snapshots_per_s(server):
    done = bots(
        "--server", server.url, "--room", "fifty", "--count", "50", "--duration", "6", "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # exactly one JSON object on stdout
    assert report["connected"] == 50
    assert report["errors"] == 0
    assert report["avatars_seen"]["min"] == 50
    # Rates and latency are the benchmarks' to judge (bench/server_load.py, BENCHMARKS.md): on a
    # busy CI box they say how loaded the box was. What must hold on any machine: every bot got
    # a stream of snapshots, measured latencies, and no more than the downstream budget.
    assert report["snapshots_per_s"]["min"] > 0
    assert report["latency_ms"]["p50"] is not None
    assert 0 < report["bytes_per_s"]["mean"] < 16_000


def test_chatty_bots_send_social_events_and_a_human_summary(server):
    done = bots(
        "--server", server.url, "--room", "social", "--count", "4", "--duration", "3",
        "--chatty", "60",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "4/4 bots connected" in done.stdout
    assert "snapshots/s per bot" in done.stdout


def test_refused_connection_is_one_sentence_and_exit_2():
    done = bots("--server", f"ws://127.0.0.1:{free_port()}", "--room", "r", "--count", "3")
    assert done.returncode == 2
    assert "refused" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:1", "127.0.0.1:8765"])
def test_bad_url_is_a_user_error(url: str):
    done = bots("--server", url, "--room", "r")
    assert done.returncode == 2
    assert "ws://" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_two_hundred_chatty_bots_for_half_a_minute(server):
    done = bots(
        "--server", server.url, "--room", "soak", "--count", "200", "--duration", "30",
        "--chatty", "3", "--json", timeout_s=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["connected"] == 200
    assert report["errors"] == 0
    assert report["avatars_seen"]["min"] == 200
    assert report["snapshots_per_s"]["min"] >= 10


def test_a_room_that_needs_an_invite_is_one_sentence(tmp_path: Path):
    with running_server(tmp_path, open_rooms=False) as closed:
        done = bots("--server", closed.url, "--room", "r", "--count", "2", "--duration", "3")
    assert done.returncode == 2
    assert "invite" in done.stderr and "Traceback" not in done.stderr
