"""Invite tokens and join links.

A token is `<payload>.<signature>`, both base64url without padding. The payload is compact JSON
{"r": room, "o": role, "n": name or null, "e": expiry (unix seconds), "j": nonce}; the signature
is HMAC-SHA256 of the payload text under the server's secret. Whoever holds the secret can mint
tokens offline (`neonbar invite`), and the server needs no table of issued invites.

The secret comes from the environment (NEONBAR_SECRET) or `<data>/secret.key`, created with mode
0600 the first time it is needed.

A resume token (`welcome.resume`) is signed the same way, so it survives a server restart: 26
bytes, base64url (35 characters, no dot): the avatar id (2 bytes, big-endian), the avatar's
nonce (8 random bytes) and the first 16 bytes of HMAC-SHA256 over those 10 bytes and the room's
name. The server keeps the nonce with the avatar (server/storage.py), so a token of an avatar
that has left, or of an id given to someone else since, admits nobody.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

from neonbar.errors import UserError
from neonbar.protocol import MAX_NAME_CHARS, MAX_ROOM_CHARS, ROLES, CloseCode

MAX_INVITE_AVATARS = 4000  # a room holds at most 4,000 avatars (RoomConfig.max_avatars)

SECRET_ENV = "NEONBAR_SECRET"
SECRET_FILE = "secret.key"
_SECRET_BYTES = 32


class TokenError(Exception):
    """A token the server refuses; `close_code` is the WebSocket close code to use."""

    def __init__(self, close_code: CloseCode, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code


@dataclass(frozen=True)
class Invite:
    room: str
    role: str
    name: str | None
    expires_s: float  # unix time
    nonce: str
    avatars: int | None = None  # avatars it may hold in its room at once; None: the default


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(data_dir: str | Path, create: bool = True) -> bytes:
    """The signing secret: $NEONBAR_SECRET, else <data_dir>/secret.key (created 0600)."""
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode("utf-8")
    path = Path(data_dir) / SECRET_FILE
    try:
        secret = path.read_bytes().strip()
    except FileNotFoundError:
        if not create:
            msg = f"no invite secret: {path} does not exist and ${SECRET_ENV} is unset"
            raise UserError(msg) from None
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_hex(_SECRET_BYTES).encode("ascii")
        # O_EXCL + 0600 at creation: the key is never readable by others, not even briefly,
        # and two processes starting together cannot overwrite each other's key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as f:
            f.write(secret + b"\n")
    except OSError as exc:
        raise UserError(f"cannot read the invite secret {path}: {exc.strerror}") from None
    if len(secret) < 16:
        raise UserError(f"the invite secret in {path} is too short (at least 16 characters)")
    return secret


def mint(
    secret: bytes,
    room: str,
    role: str,
    name: str | None = None,
    ttl_s: float = 86400.0,
    now_s: float | None = None,
    avatars: int | None = None,
) -> str:
    """Sign a new invite token (`avatars`: how many avatars it may hold in its room at once)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if avatars is not None and not 1 <= avatars <= MAX_INVITE_AVATARS:
        raise ValueError(f"avatars must be 1-{MAX_INVITE_AVATARS}")
    now_s = time.time() if now_s is None else now_s
    body: dict[str, Any] = {
        "r": room, "o": role, "n": name, "e": int(now_s + ttl_s), "j": secrets.token_hex(8)
    }  # fmt: skip
    if avatars is not None:
        body["a"] = avatars
    payload = _b64encode(json.dumps(body, separators=(",", ":")).encode("utf-8"))
    sig = hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()
    return f"{payload}.{_b64encode(sig)}"


def verify(secret: bytes, token: str, now_s: float | None = None) -> Invite:
    """Check a token's signature and expiry. Raises TokenError (4401 forged, 4402 expired)."""
    forged = TokenError(CloseCode.AUTH_FAILED, "invite token is not valid")
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 1024:
        raise forged
    payload, sig_text = token.split(".")
    try:
        sig = _b64decode(sig_text)
        payload_ascii = payload.encode("ascii")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise forged from None
    expected = hmac.new(secret, payload_ascii, hashlib.sha256).digest()
    if not hmac.compare_digest(sig, expected):
        raise forged
    try:
        body = json.loads(_b64decode(payload))
        invite = Invite(
            room=str(body["r"]),
            role=str(body["o"]),
            name=None if body.get("n") is None else str(body["n"]),
            expires_s=float(body["e"]),
            nonce=str(body.get("j", "")),
            avatars=None if body.get("a") is None else int(body["a"]),
        )
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise forged from None
    if invite.role not in ROLES:
        raise forged
    if invite.avatars is not None and not 1 <= invite.avatars <= MAX_INVITE_AVATARS:
        raise forged
    now_s = time.time() if now_s is None else now_s
    if now_s >= invite.expires_s:
        raise TokenError(CloseCode.TOKEN_EXPIRED, "invite token has expired")
    return invite


# ------------------------------------------------------------------------------ resume tokens

RESUME_NONCE_BYTES = 8
_RESUME_MAC_BYTES = 16
_RESUME_BYTES = 2 + RESUME_NONCE_BYTES + _RESUME_MAC_BYTES


@dataclass(frozen=True)
class ResumeClaim:
    """What a resume token says once its signature checks: which avatar of the room, and the
    nonce that avatar must still have."""

    avatar: int
    nonce: str  # hex


def new_resume_nonce() -> str:
    return secrets.token_hex(RESUME_NONCE_BYTES)


def _resume_mac(secret: bytes, room: str, body: bytes) -> bytes:
    message = b"neonbar-resume\x00" + room.encode("utf-8") + b"\x00" + body
    return hmac.new(secret, message, hashlib.sha256).digest()[:_RESUME_MAC_BYTES]


def mint_resume(secret: bytes, room: str, avatar: int, nonce: str) -> str:
    """The resume token of avatar `avatar` (0-65535) in `room`, bound to its `nonce` (hex)."""
    raw_nonce = bytes.fromhex(nonce)
    if not 0 <= avatar <= 0xFFFF or len(raw_nonce) != RESUME_NONCE_BYTES:
        raise ValueError("avatar must be 0-65535 and nonce 8 bytes of hex")
    body = avatar.to_bytes(2, "big") + raw_nonce
    return _b64encode(body + _resume_mac(secret, room, body))


def read_resume(secret: bytes, room: str, token: object) -> ResumeClaim | None:
    """The claim of a resume token signed for `room`, or None (forged, other room, garbage)."""
    if not isinstance(token, str) or len(token) != 35:
        return None
    try:
        raw = _b64decode(token)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _RESUME_BYTES:
        return None
    body, mac = raw[:-_RESUME_MAC_BYTES], raw[-_RESUME_MAC_BYTES:]
    if not hmac.compare_digest(mac, _resume_mac(secret, room, body)):
        return None
    return ResumeClaim(int.from_bytes(body[:2], "big"), body[2:].hex())


# ------------------------------------------------------------------------------- join links


def join_link(server_url: str, room: str, token: str | None = None) -> str:
    """`ws://H:P/?room=R&token=T`: everything a client needs to join, in one string."""
    parts = urlsplit(server_url)
    query = {"room": room}
    if token:
        query["token"] = token
    return urlunsplit(
        (parts.scheme, parts.netloc, parts.path or "/", urlencode(query, quote_via=quote), "")
    )


def parse_join_link(text: str) -> tuple[str, str | None, str | None]:
    """Split a join link (or a bare ws://H:P) into (server_url, room or None, token or None)."""
    text = text.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise UserError(f"{text!r} is not a server address; expected ws://HOST:PORT")
    query = parse_qs(parts.query)
    room = query.get("room", [None])[0]
    token = query.get("token", [None])[0]
    server_url = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return server_url, room or None, token or None


# ------------------------------------------------------------------------------------ command


def run_invite(args: argparse.Namespace) -> int:
    """`neonbar invite`: print the token (line 1) and the join link (line 2)."""
    room: str = args.room
    if not room or len(room) > MAX_ROOM_CHARS or not all(c.isalnum() or c in "_.-" for c in room):
        raise UserError("--room must be 1-64 letters, digits, '_', '.' or '-'")
    if args.name is not None and not (0 < len(args.name) <= MAX_NAME_CHARS):
        raise UserError(f"--name must be 1-{MAX_NAME_CHARS} characters")
    avatars = getattr(args, "avatars", None)
    if avatars is not None and not 1 <= avatars <= MAX_INVITE_AVATARS:
        raise UserError(f"--avatars must be 1-{MAX_INVITE_AVATARS}, not {avatars}")
    if avatars is not None and avatars > 1 and args.name is not None:
        raise UserError("an invite with --name is one person: it holds one avatar")
    secret = load_secret(args.data)
    token = mint(secret, room, args.role, name=args.name, ttl_s=args.ttl, avatars=avatars)
    print(token)
    print(join_link(args.server, room, token))
    return 0
