"""The command line: names, flags and user-mistake handling."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from neonbar.cli import build_parser, duration_s, main


def test_durations() -> None:
    assert duration_s("90") == 90
    assert duration_s("15m") == 900
    assert duration_s("24h") == 86400
    with pytest.raises(Exception, match="not a duration"):
        duration_s("soon")


def test_every_documented_command_parses() -> None:
    parser = build_parser()
    parser.parse_args(["server", "--host", "0.0.0.0", "--port", "1", "--data", "d"])
    parser.parse_args(["invite", "--room", "r", "--role", "viewer", "--ttl", "24h"])
    parser.parse_args(["client", "--server", "ws://h:1", "--room", "r", "--name", "n"])
    parser.parse_args(["bots", "--server", "ws://h:1", "--room", "r", "--count", "3", "--json"])
    parser.parse_args(["demo", "--bots", "2", "--offscreen", "--record", "a.mp4"])
    parser.parse_args(["lut", "apply", "a.cube", "in.png", "out.png"])


def test_bad_role_is_a_usage_error_not_a_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "neonbar", "invite", "--room", "r", "--role", "king"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_user_error_exits_2_with_a_sentence(monkeypatch, capsys) -> None:
    from neonbar import errors

    def broken(args):
        raise errors.UserError("the room name is too long")

    import neonbar.cli as cli

    monkeypatch.setitem(cli.HANDLERS, "lut", "tests.test_cli_helper:nothing")
    monkeypatch.setattr("importlib.import_module", lambda name: type("M", (), {"nothing": broken}))
    assert main(["lut", "apply", "a", "b", "c"]) == 2
    assert "the room name is too long" in capsys.readouterr().err


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _all_parsers(child)
    return found


def test_every_option_has_help_text() -> None:
    missing = [
        f"{p.prog} {'/'.join(a.option_strings) or a.dest}"
        for p in _all_parsers(build_parser())
        for a in p._actions
        if not isinstance(a, argparse._SubParsersAction | argparse._HelpAction) and not a.help
    ]
    assert missing == []


def test_output_cut_short_by_the_reader_is_not_a_traceback(tmp_path) -> None:
    # `neonbar invite … | head -0`: the reader has closed the pipe before anything is written.
    cmd = [sys.executable, "-m", "neonbar", "invite", "--room", "r", "--role", "host"]
    proc = subprocess.Popen(
        [*cmd, "--data", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 0
    assert "Traceback" not in err
