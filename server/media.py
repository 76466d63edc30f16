"""Scene media: found and hashed off the event loop, served by content hash over HTTP.

`MediaLibrary` turns a scene name into its mp4 (neonbar.scenes), its sha256, frame rate and
frame count. Hashing a 30 s 720p clip reads ~10 MB, so it runs on a worker thread and the room
polls the result from its tick (server/playback.py).

A generated scene that was never rendered on this host is rendered when a room chooses it: by
`neonbar scene render` in a child process (the generator needs Panda3D, which the server never
imports, and a render keeps a core busy for minutes: niced, so the tick loop wins), into the
render cache, where the next choice finds it. Meanwhile the room's timeline says "preparing"
with a sentence saying so; a render that fails makes the scene "missing" with its reason. Two
rooms choosing the same scene share one render.

`media_route` answers `GET /media/<sha256>` on the websocket port (docs/protocol.md, "Watch
together"): only with a valid invite token (`Authorization: Bearer T`, or `?token=T`) for a room
whose timeline plays that media or plays it next, with byte ranges so a cut download resumes.
"""

from __future__ import annotations

import atexit
import logging
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neonbar.errors import UserError
from neonbar.tokens import TokenError, verify
from server.delivery import HttpReply, HttpRequest

log = logging.getLogger("neonbar.server.media")

MAX_RANGE_BYTES = 8 << 20  # one response at most: bounds memory and the event loop's read
RENDER_NICENESS = 10  # a render yields the CPU to the tick loop (and to clients on this host)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class SceneMedia:
    """A scene ready to play: what its timeline needs and where its file is."""

    scene: str
    title: str
    path: Path
    sha256: str
    fps: float
    frames: int
    size: int


class MediaMissing(Exception):
    """The scene cannot be played on this server: one sentence for the room."""


@dataclass(frozen=True)
class _RenderNeeded:
    spec: Any
    path: Path


class MediaLibrary:
    """Scenes resolved to media on a worker thread; sha256 -> file for the HTTP route.

    Args:
        workers: threads that find, probe and hash media.
    """

    def __init__(self, workers: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="neonbar-media")
        self._by_hash: dict[str, SceneMedia] = {}
        self._lock = threading.Lock()
        self._renders: dict[Path, Future[Path]] = {}  # one render per output file
        self._children: set[subprocess.Popen[bytes]] = set()
        self._closed = False
        atexit.register(self._stop_renders)  # a render must not outlive its server

    def resolve(
        self,
        scene: str,
        *,
        render: bool = False,
        on_render: Callable[[str], None] | None = None,
    ) -> Future[SceneMedia]:
        """Find, probe and hash `scene`'s media; the future raises MediaMissing if it cannot.

        Args:
            render: render a generated scene that has no render yet (`neonbar server` does;
                never for look-ahead at the next scene, which must not cost minutes of CPU).
                False: such a scene is missing, with the command that renders it.
            on_render: called (on a worker thread) with a sentence for the room when a render
                starts or is joined.
        """
        outer: Future[SceneMedia] = Future()

        def first() -> None:
            try:
                found = self._find(scene, render)
                if isinstance(found, SceneMedia):
                    outer.set_result(found)
                    return
                job, sentence = self._render(found)
                if on_render is not None:
                    on_render(sentence)
                job.add_done_callback(lambda done: self._after_render(done, scene, outer))
            except BaseException as exc:  # the future carries it to the room
                outer.set_exception(exc)

        self._submit(first, outer)
        return outer

    def _submit(self, fn: Callable[[], None], outer: Future[SceneMedia]) -> None:
        try:
            self._pool.submit(fn)
        except RuntimeError:  # shut down
            outer.set_exception(MediaMissing("the server is shutting down"))

    def _after_render(self, job: Future[Path], scene: str, outer: Future[SceneMedia]) -> None:
        def second() -> None:
            try:
                job.result()  # raises MediaMissing with the render's reason
                found = self._find(scene, render=False)
                if not isinstance(found, SceneMedia):  # pragma: no cover - rendered just now
                    raise MediaMissing(f"the render of scene {scene!r} went missing")
                outer.set_result(found)
            except BaseException as exc:
                outer.set_exception(exc)

        self._submit(second, outer)

    def scene_names(self) -> list[str]:
        """Every scene this server knows, in the order `next` walks them."""
        from neonbar.scenes import list_scenes

        try:
            return [spec.name for spec in list_scenes()]
        except UserError as exc:
            log.warning("cannot list scenes: %s", exc)
            return []

    def _find(self, scene: str, render: bool) -> SceneMedia | _RenderNeeded:
        from neonbar.scenes import load_scene, media_hash, media_path, render_path
        from neonbar.video import probe

        try:
            spec = load_scene(scene)
        except UserError as exc:
            raise MediaMissing(str(exc)) from None
        try:
            path = media_path(spec, render=False)
        except UserError as exc:
            other = _render_at_another_size(spec)
            if other is None:
                if render:
                    return _RenderNeeded(spec, render_path(spec))
                raise MediaMissing(str(exc)) from None
            path = other
        if not path.is_file():
            raise MediaMissing(f"the media of scene {scene!r} is missing on the server ({path})")
        try:
            info = probe(path)  # counts the packets: the exact frame count
            fps, frames = info.fps, info.frames
            sha256 = media_hash(path)
            size = path.stat().st_size
        except (OSError, ValueError, UserError) as exc:
            raise MediaMissing(f"the media of scene {scene!r} cannot be played: {exc}") from None
        media = SceneMedia(spec.name, spec.title, path, sha256, fps, frames, size)
        with self._lock:
            self._by_hash[sha256] = media
        return media

    def by_hash(self, sha256: str) -> SceneMedia | None:
        with self._lock:
            return self._by_hash.get(sha256)

    # ---------------------------------------------------------------------------- renders

    def rendering(self) -> list[Path]:
        """The renders running now (their output files)."""
        with self._lock:
            return [path for path, job in self._renders.items() if not job.done()]

    def _render(self, need: _RenderNeeded) -> tuple[Future[Path], str]:
        """Start (or join) the render of `need.spec` into the render cache."""
        spec = need.spec
        # Short: the strip under the big screen shows it on one line, between the title and who
        # controls (~25 characters fit there).
        sentence = "rendering on the server…"
        with self._lock:
            if self._closed:
                raise MediaMissing("the server is shutting down")
            job = self._renders.get(need.path)
            if job is not None and not job.done():
                return job, sentence  # another room asked first: one render for both
            job = Future()
            self._renders[need.path] = job
        # A daemon thread waits for the child: a render in progress never holds up shutdown.
        threading.Thread(target=self._run_render, args=(spec, need.path, job),
                         name="neonbar-render", daemon=True).start()  # fmt: skip
        w, h = spec.size
        log.info("rendering scene %s (%d frames at %dx%d) into %s", spec.name, spec.frame_count,
                 w, h, need.path)  # fmt: skip
        return job, sentence

    def _run_render(self, spec: Any, out: Path, job: Future[Path]) -> None:
        from neonbar.scenes import ROOT

        cmd = [sys.executable, "-m", "neonbar", "scene", "render", str(spec.path),
               "--out", str(out)]  # fmt: skip
        nice = shutil.which("nice")
        if nice:
            cmd = [nice, "-n", str(RENDER_NICENESS), *cmd]
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            child = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        except OSError as exc:
            job.set_exception(MediaMissing(f"cannot render scene {spec.name!r}: {exc}"))
            return
        with self._lock:
            self._children.add(child)
        try:
            _, err = child.communicate()
        finally:
            with self._lock:
                self._children.discard(child)
        if child.returncode == 0 and out.is_file():
            log.info("rendered scene %s", spec.name)
            job.set_result(out)
            return
        reason = _last_line(err) if child.returncode > 0 else "the render was stopped"
        log.warning("render of %s failed (exit %s): %s", spec.name, child.returncode, reason)
        job.set_exception(
            MediaMissing(f"scene {spec.name!r} could not be rendered on the server: {reason}")
        )

    def _stop_renders(self) -> None:
        with self._lock:
            self._closed = True
            children = list(self._children)
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()

    def close(self) -> None:
        self._stop_renders()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _last_line(stderr: bytes) -> str:
    """The sentence a failed `neonbar scene render` ended with (tqdm redraws its bar in place)."""
    text = stderr.decode("utf-8", "replace").replace("\r", "\n")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _render_at_another_size(spec: Any) -> Path | None:
    """A render of this very spec at another size (`neonbar scene render --size`), largest
    first: the file name carries the spec's hash for that size, so a stale one never matches."""
    from neonbar.scenes import render_path

    default = render_path(spec)
    found = []
    for path in default.parent.glob(f"{spec.name}-*x*-*.mp4"):
        try:
            w, h = (int(v) for v in path.name[len(spec.name) + 1 :].split("-")[0].split("x"))
        except ValueError:
            continue
        if render_path(spec, (w, h)) == path and path.is_file():
            found.append((w * h, path))
    return max(found)[1] if found else None


def media_route(
    library: MediaLibrary,
    secret: bytes,
    room_allows: Callable[[str, str], bool],
    open_rooms: bool = False,
) -> Callable[[HttpRequest], HttpReply]:
    """The `/media/` HTTP route.

    Args:
        room_allows: (room name, sha256) -> whether that room plays (or plays next) the media.
        open_rooms: a server started with --open also serves clients without a token, for any
            room that plays the media (`?room=R` names it).
    """

    def route(request: HttpRequest) -> HttpReply:
        sha256 = request.path.removeprefix("/media/").removesuffix(".mp4")
        if not _SHA256.match(sha256):
            return _text(404, "no such media: ask for /media/<sha256 in lower-case hex>")
        token = _token(request)
        if token:
            try:
                room = verify(secret, token).room
            except TokenError as exc:
                return _text(403, f"media refused: {exc}")
        elif open_rooms and request.query.get("room"):
            room = request.query["room"]
        else:
            return _text(401, "media refused: an invite token is required")
        if not room_allows(room, sha256):
            return _text(403, "media refused: your room does not play this scene")
        media = library.by_hash(sha256)
        if media is None or not media.path.is_file():
            return _text(404, "the server does not have this media any more")
        return _serve_file(media, request.headers.get("range"))

    return route


def _token(request: HttpRequest) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.query.get("token") or None


def _text(status: int, sentence: str) -> HttpReply:
    return HttpReply(status, (sentence + "\n").encode())


def _serve_file(media: SceneMedia, range_header: str | None) -> HttpReply:
    size = media.path.stat().st_size
    common = {"Accept-Ranges": "bytes", "ETag": f'"{media.sha256}"',
              "Cache-Control": "private, max-age=31536000, immutable"}  # fmt: skip
    if range_header is None:
        if size > MAX_RANGE_BYTES * 8:
            return _text(413, "this media is large: ask for it in byte ranges (Range: bytes=…)")
        return HttpReply(200, _read(media.path, 0, size), "video/mp4", common)
    match = _RANGE.match(range_header.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return _text(416, "only one byte range is served (Range: bytes=START-END)")
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = int(last) if last else size - 1
    else:  # a suffix: the last N bytes
        start = max(0, size - int(last))
        end = size - 1
    if start >= size or end < start:
        return HttpReply(416, b"", "text/plain", {**common, "Content-Range": f"bytes */{size}"})
    end = min(end, size - 1, start + MAX_RANGE_BYTES - 1)
    headers = {**common, "Content-Range": f"bytes {start}-{end}/{size}"}
    return HttpReply(206, _read(media.path, start, end + 1 - start), "video/mp4", headers)


def _read(path: Path, start: int, length: int) -> bytes:
    with path.open("rb") as f:
        f.seek(start)
        return f.read(length)


def resolved(future: Future[SceneMedia]) -> SceneMedia | str | None:
    """A finished resolve's media, or its sentence if missing; None while it runs."""
    if not future.done():
        return None
    try:
        return future.result()
    except MediaMissing as exc:
        return str(exc)
    except Exception as exc:  # a bug in probing must still tell the room something
        log.exception("resolving media failed")
        return f"the scene's media could not be prepared ({type(exc).__name__})"


__all__ = ["MediaLibrary", "MediaMissing", "SceneMedia", "media_route", "resolved"]
