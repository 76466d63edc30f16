"""Scene media for the big screen: fetched over HTTP by content hash, cached, verified.

The server serves each scene's mp4 at `http://HOST:PORT/media/<sha256>` on its websocket port
(docs/protocol.md, "Watch together") to holders of a valid invite for a room that plays it. A
client downloads it once into its cache (`neonbar client --data DIR`, `DIR/media/<sha256>.mp4`)
in ranged chunks, so a cut download resumes where it stopped (`<sha256>.part` keeps what
arrived). The file is hashed as it arrives and again whenever it is taken from the cache: a
corrupted or truncated file is refused and deleted, never played.

No Panda3D here: `MediaDownload` runs in its own thread and the frame loop polls its progress.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("neonbar.media")

CHUNK_BYTES = 4 << 20  # one ranged request: a cut link loses at most this much
READ_BYTES = 256 << 10
TIMEOUT_S = 15.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


class MediaError(Exception):
    """The media cannot be had: one sentence for the screen and the log.

    `retry` is True when trying again may help (a cut link), False when it will not (refused,
    missing, corrupted).
    """

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


def media_url(server_url: str, sha256: str, room: str | None = None) -> str:
    """ws://H:P[/…] -> http://H:P/media/<sha256> (wss -> https); `room` for --open servers."""
    parts = urllib.parse.urlsplit(server_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    query = urllib.parse.urlencode({"room": room}) if room else ""
    return urllib.parse.urlunsplit((scheme, parts.netloc, f"/media/{sha256}", query, ""))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class MediaCache:
    """`DIR/media/<sha256>.mp4`, each file checked against its name before it is used."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "media"
        self._verified: set[str] = set()

    def path(self, sha256: str) -> Path:
        return self.dir / f"{_checked(sha256)}.mp4"

    def part_path(self, sha256: str) -> Path:
        return self.dir / f"{_checked(sha256)}.part"

    def get(self, sha256: str) -> Path | None:
        """The cached file if it is there and whole (hash checked once per process)."""
        path = self.path(sha256)
        if not path.is_file():
            return None
        if sha256 not in self._verified:
            if file_sha256(path) != sha256:
                log.warning("cached %s is corrupted; deleting it", path.name)
                path.unlink(missing_ok=True)
                return None
            self._verified.add(sha256)
        return path

    def accept(self, sha256: str, part: Path, digest: str) -> Path:
        """Move a finished download into place once its hash matches."""
        if digest != sha256:
            part.unlink(missing_ok=True)
            raise MediaError(
                f"the scene's media arrived corrupted (sha256 {digest[:12]}…, expected "
                f"{sha256[:12]}…); it was deleted and will not be played"
            )
        path = self.path(sha256)
        part.replace(path)
        self._verified.add(sha256)
        return path


def _checked(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise MediaError("a media id must be a sha256 in lower-case hex")
    return sha256


def fetch(
    server_url: str,
    sha256: str,
    cache: MediaCache,
    token: str | None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    room: str | None = None,
) -> Path:
    """Download (or resume downloading) `sha256` into the cache and return its path.

    Raises:
        MediaError: refused (no invite, not this room's), missing on the server, cut off and
            not resumable, or corrupted.
    """
    cached = cache.get(sha256)
    if cached is not None:
        return cached
    cache.dir.mkdir(parents=True, exist_ok=True)
    part = cache.part_path(sha256)
    url = urllib.parse.urlsplit(media_url(server_url, sha256, room))
    have = part.stat().st_size if part.exists() else 0
    digest = hashlib.sha256()
    if have:
        with part.open("rb") as f:  # what arrived before the cut counts toward the hash
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        log.info("resuming %s at %d bytes", sha256[:12], have)
    total: int | None = None
    try:
        with part.open("ab") as out:
            while total is None or have < total:
                if cancel is not None and cancel.is_set():
                    raise MediaError("download cancelled", retry=True)
                start, total = _get_range(url, token, sha256, have, chunk_bytes, out, digest,
                                          progress, total, cancel)  # fmt: skip
                if start == have:  # nothing new arrived: the server stopped answering
                    raise MediaError("the media download stopped; it will resume", retry=True)
                have = start
    except MediaError as exc:
        if not exc.retry or not (part.exists() and part.stat().st_size):
            part.unlink(missing_ok=True)  # refused: nothing worth resuming
        raise
    if have != total:
        raise MediaError(f"the media is {have} bytes, the server said {total}")
    return cache.accept(sha256, part, digest.hexdigest())


def _get_range(
    url: urllib.parse.SplitResult,
    token: str | None,
    sha256: str,
    have: int,
    chunk_bytes: int,
    out: object,
    digest: hashlib._Hash,  # type: ignore[name-defined]
    progress: Callable[[int, int], None] | None,
    total: int | None,
    cancel: threading.Event | None,
) -> tuple[int, int]:
    """One ranged GET appended to `out`; returns (bytes now held, total size)."""
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(url.hostname or "127.0.0.1", url.port, timeout=TIMEOUT_S)
    headers = {"Range": f"bytes={have}-{have + chunk_bytes - 1}", "User-Agent": "neonbar-py/1"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("GET", f"{url.path}?{url.query}" if url.query else url.path, headers=headers)
        resp = conn.getresponse()
        if resp.status in (401, 403):
            raise MediaError(_reason(resp, "the server refused to send this scene's media"))
        if resp.status == 404:
            raise MediaError(_reason(resp, "the server does not have this scene's media"))
        if resp.status == 416 and total is not None:
            return have, total
        if resp.status == 200 and have == 0:
            size = int(resp.getheader("Content-Length") or 0)
            start, end = 0, size - 1
        elif resp.status == 206:
            match = _CONTENT_RANGE.match(resp.getheader("Content-Range") or "")
            if match is None:
                raise MediaError("the server sent a part of the media without saying which")
            start, end, size = (int(g) for g in match.groups())
        else:
            raise MediaError(_reason(resp, f"media download failed (HTTP {resp.status})"))
        if start != have:
            raise MediaError(f"the server sent bytes from {start}, not {have}")
        got = have
        write = out.write  # type: ignore[attr-defined]
        try:
            while got <= end:
                if cancel is not None and cancel.is_set():
                    break
                data = resp.read(min(READ_BYTES, end + 1 - got))
                if not data:
                    break
                write(data)
                digest.update(data)
                got += len(data)
                if progress is not None:
                    progress(got, size)
        except (OSError, http.client.HTTPException) as exc:
            log.info("media download cut at %d bytes (%s)", got, exc)
        out.flush()  # type: ignore[attr-defined]
        return got, size
    except (OSError, http.client.HTTPException) as exc:
        raise MediaError(f"cannot download the scene's media: {exc}", retry=True) from None
    finally:
        conn.close()


def _reason(resp: http.client.HTTPResponse, fallback: str) -> str:
    try:
        text = resp.read(500).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        text = ""
    return text.splitlines()[0] if text else fallback


class MediaDownload:
    """One scene's media fetched on a daemon thread; poll `done`, `error`, `fraction`.

    A cut download is retried (resuming) up to `attempts` times before giving up with `error`.
    """

    def __init__(
        self,
        server_url: str,
        sha256: str,
        cache: MediaCache,
        token: str | None,
        attempts: int = 4,
        room: str | None = None,
    ) -> None:
        self.sha256 = sha256
        self.path: Path | None = None
        self.error: str | None = None
        self.received = 0
        self.total = 0
        self._cancel = threading.Event()
        self._args = (server_url, sha256, cache, token)
        self._room = room
        self._attempts = attempts
        self._thread = threading.Thread(target=self._run, name="neonbar-media", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return self.path is not None or self.error is not None

    @property
    def fraction(self) -> float:
        return self.received / self.total if self.total else 0.0

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    def _progress(self, received: int, total: int) -> None:
        self.received, self.total = received, total

    def _run(self) -> None:
        server_url, sha256, cache, token = self._args
        last = "the media download failed"
        for attempt in range(self._attempts):
            if self._cancel.is_set():
                break
            try:
                self.path = fetch(server_url, sha256, cache, token, self._progress, self._cancel,
                                  room=self._room)  # fmt: skip
                return
            except MediaError as exc:
                last = str(exc)
                log.warning("media %s (attempt %d): %s", sha256[:12], attempt + 1, last)
                if not exc.retry:
                    break
                self._cancel.wait(min(4.0, 0.25 * 2**attempt))
            except Exception as exc:  # the thread must report, never die silently
                log.exception("media download crashed")
                last = f"media download failed: {exc}"
                break
        self.error = last


__all__ = ["MediaCache", "MediaDownload", "MediaError", "fetch", "file_sha256", "media_url"]
