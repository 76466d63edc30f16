"""Invite tokens, the secret file and join links."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest

from neonbar.errors import UserError
from neonbar.protocol import CloseCode
from neonbar.tokens import (
    TokenError,
    join_link,
    load_secret,
    mint,
    parse_join_link,
    run_invite,
    verify,
)

SECRET = b"0123456789abcdef0123456789abcdef"


def test_a_minted_token_verifies():
    token = mint(SECRET, "bar", "host", name="Wong", ttl_s=60, now_s=1000)
    invite = verify(SECRET, token, now_s=1030)
    assert (invite.room, invite.role, invite.name, invite.expires_s) == (
        "bar",
        "host",
        "Wong",
        1060,
    )
    assert mint(SECRET, "bar", "host", now_s=1000) != mint(SECRET, "bar", "host", now_s=1000)


def test_expired_token_is_refused_with_4402():
    token = mint(SECRET, "bar", "viewer", ttl_s=60, now_s=1000)
    with pytest.raises(TokenError) as info:
        verify(SECRET, token, now_s=1060)
    assert info.value.close_code == CloseCode.TOKEN_EXPIRED


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),  # signature changed
        lambda t: "e30" + t[t.index(".") :],  # payload swapped for {}
        lambda t: t.replace(".", ""),
        lambda t: t + ".x",
        lambda t: "",
        lambda t: "é.é",
        lambda t: "!!!.???",
    ],
)
def test_forged_tokens_are_refused_with_4401(mangle):
    token = mint(SECRET, "bar", "collaborator")
    with pytest.raises(TokenError) as info:
        verify(SECRET, mangle(token))
    assert info.value.close_code == CloseCode.AUTH_FAILED


def test_another_secret_does_not_verify():
    with pytest.raises(TokenError):
        verify(b"another secret entirely, 32 bytes", mint(SECRET, "bar", "host"))


def test_secret_file_is_created_private_and_reused(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("NEONBAR_SECRET", raising=False)
    first = load_secret(tmp_path / "data")
    path = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(tmp_path / "data") == first and len(first) >= 32
    monkeypatch.setenv("NEONBAR_SECRET", "from-the-environment")
    assert load_secret(tmp_path / "data") == b"from-the-environment"


def test_missing_secret_without_create_is_a_user_error(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("NEONBAR_SECRET", raising=False)
    with pytest.raises(UserError):
        load_secret(tmp_path, create=False)


def test_join_links_round_trip():
    token = mint(SECRET, "bar", "host")
    link = join_link("ws://10.0.0.5:8765", "bar", token)
    assert link == f"ws://10.0.0.5:8765/?room=bar&token={token}"
    assert parse_join_link(link) == ("ws://10.0.0.5:8765", "bar", token)
    assert parse_join_link("ws://h:1") == ("ws://h:1", None, None)
    assert parse_join_link("wss://h:1/?room=x") == ("wss://h:1", "x", None)
    with pytest.raises(UserError):
        parse_join_link("http://h:1/")
    with pytest.raises(UserError):
        parse_join_link("bar")


def test_run_invite_prints_token_and_link(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.delenv("NEONBAR_SECRET", raising=False)
    args = argparse.Namespace(
        room="bar", role="viewer", name=None, ttl=3600.0, data=str(tmp_path), server="ws://h:9"
    )
    assert run_invite(args) == 0
    token, link = capsys.readouterr().out.splitlines()
    assert verify(load_secret(tmp_path), token).role == "viewer"
    assert parse_join_link(link) == ("ws://h:9", "bar", token)
    with pytest.raises(UserError):
        run_invite(argparse.Namespace(**{**vars(args), "room": "no spaces"}))
