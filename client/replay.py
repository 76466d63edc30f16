"""`neonbar replay SESSION --out F.mp4`: re-render a recorded session through the real client.

A `RecordedSession` is the app's `Session` (client/app.py) fed from a `.nbsession` recording
(client/recording.py) by a virtual clock: before each video frame it hands every frame received
up to that instant to a real, unconnected `client.net.AsyncSession` — the same decoding, world
view, interpolation, clock sync and event ordering the live client ran — with the clock reading
the recorded receive time. The local avatar follows its recorded state (`ScriptedMotion`).

The renderer steps the app at a FIXED time step (Panda3D's clock in non-real-time mode, the
app's clock on the virtual time) and writes every rendered frame to an H.264 yuv420p mp4: one
rendered frame per video frame, none repeated, however slowly the CPU renders. The camera flies
the guided tour (client/tour.py) or follows an avatar by name.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from client.net import AsyncSession, SessionState
from client.recording import Recording, read_session
from neonbar.errors import UserError

log = logging.getLogger("neonbar.replay")

REMOTE_DELAY_S = 0.1  # as client.app: others are drawn 100 ms in the past
DRAW_LOG_SORT = 56  # after the capture task (55): the frame has been drawn
MAX_FPS = 120
SCREEN_WAIT_S = 5.0  # longest wait for the big screen's decoder to hold the frame due
SCREENSHOT_AFTER_PLAY_S = 7.0  # the default screenshot: the scene under way, the screen in view


class RecordedSession(SessionState):
    """The app's network session, played back from a recording by a virtual clock."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        header = recording.header
        self._feed_s = recording.start_s
        self.now_s = recording.start_s
        self._session = AsyncSession(
            str(header.get("server", "ws://replay")),
            str(header.get("room", "replay")),
            str(header.get("name", "replay")),
            clock=lambda: self._feed_s,
        )
        self._next = 0
        self.frames_fed = 0

    # ------------------------------------------------------------------ Session protocol

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def set_local_state(self, x_m: float, y_m: float, yaw_rad: float) -> None:
        pass  # the recording already says where we were

    def send(self, msg: dict[str, Any]) -> None:
        pass  # nobody is listening: what we said then is in the recording

    def poll(self) -> list[dict[str, Any]]:
        inbox = self._session.inbox
        out = list(inbox)
        inbox.clear()
        return out

    def remote_avatars(self, delay_s: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._session.view.sample(self.server_time() - delay_s, exclude=self.you)

    def correction(self) -> tuple[float, float, float, int] | None:
        return None  # the recorded local state is already the reconciled one

    def sent_state(self, seq: int) -> tuple[float, float, float] | None:
        return None

    def server_time(self) -> float:
        return self._session.clock_sync.server_time(self.now_s)

    # ------------------------------------------------------------------ playback

    def advance(self, t_s: float) -> None:
        """Deliver every recorded frame received up to local time t_s; the clock reads t_s."""
        frames = self.recording.frames
        while self._next < len(frames) and frames[self._next][0] <= t_s:
            self._feed_s, frame = frames[self._next]
            self._session._on_frame(frame)
            self._next += 1
            self.frames_fed += 1
        self._feed_s = self.now_s = t_s

    def avatar_named(self, name: str) -> int | None:
        """The id of the avatar called `name` now (case-insensitive), or None."""
        want = name.casefold()
        for avatar_id, entry in self.roster.items():
            if str(entry.get("name", "")).casefold() == want:
                return avatar_id
        return None


@dataclass
class ScriptedMotion:
    """Stands in for the app's `LocalMotion`: the local avatar where the recording drew it."""

    recording: Recording
    session: RecordedSession
    fallback: tuple[float, float, float] = (0.0, 0.0, 0.0)
    collision: Any = None

    def place(self, x_m: float, y_m: float, yaw_rad: float | None = None) -> None:
        self.fallback = (x_m, y_m, self.fallback[2] if yaw_rad is None else yaw_rad)

    def step(self, move: Any, dt_s: float) -> tuple[float, float, float]:
        return self.shown()

    def reconcile(self, *args: Any, **kwargs: Any) -> None:
        pass

    def shown(self) -> tuple[float, float, float]:
        return self.recording.local_at(self.session.now_s) or self.fallback

    def correction_m(self) -> float:
        return 0.0


# ------------------------------------------------------------------------------ drawn log


@dataclass
class DrawLog:
    """One JSON line per drawn frame: the app's clock and where every avatar was drawn.

    Attach it to a live app and to a replay of its recording: the two logs must agree.
    """

    app: Any
    out: IO[str]
    clock: Callable[[], float]
    lines: int = 0

    def __post_init__(self) -> None:
        self.app.base.taskMgr.add(self._task, "neonbar-draw-log", sort=DRAW_LOG_SORT)

    def _task(self, task: Any) -> int:
        self.write()
        return task.cont

    def write(self) -> None:
        crowd = self.app.crowd
        drawn = {}
        for avatar_id in list(crowd.slot_of):
            pos = crowd.position(avatar_id)
            if pos is not None:
                drawn[str(avatar_id)] = [round(float(pos[0]), 5), round(float(pos[1]), 5)]
        self.out.write(json.dumps({"t": self.clock(), "you": self.app.you, "drawn": drawn}) + "\n")
        self.lines += 1

    def close(self) -> None:
        self.app.base.taskMgr.remove("neonbar-draw-log")
        self.out.flush()


def read_draw_log(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------------------ rendering


@dataclass
class ReplayResult:
    out: Path
    frames: int
    fps: int
    size: tuple[int, int]
    duration_s: float
    render_s: float
    camera: str
    frames_fed: int = 0
    notes: list[str] = field(default_factory=list)


def grab_rgb(base: Any) -> np.ndarray | None:
    """The last drawn frame as (H, W, 3) uint8 RGB, top row first."""
    tex = base.win.getScreenshot()
    if tex is None or not tex.hasRamImage():
        return None
    h, w = tex.getYSize(), tex.getXSize()
    img = np.frombuffer(memoryview(tex.getRamImageAs("RGB")), np.uint8).reshape(h, w, 3)
    return img[::-1]  # Panda3D's images start at the bottom row


def parse_camera(words: Iterable[str]) -> tuple[str, str | None]:
    """`tour` or `follow NAME` -> (mode, name); UserError otherwise."""
    words = list(words)
    if words == ["tour"]:
        return "tour", None
    if len(words) >= 2 and words[0] == "follow":
        return "follow", " ".join(words[1:])
    raise UserError(f"--camera must be 'tour' or 'follow NAME', not {' '.join(words)!r}")


def render(
    recording: Recording,
    out: str | Path,
    *,
    size: tuple[int, int] = (1280, 720),
    fps: int = 30,
    camera: str = "tour",
    follow: str | None = None,
    times_s: Iterable[float] | None = None,
    draw_log: str | Path | None = None,
    screenshot: str | Path | None = None,
    screenshot_at_s: float | None = None,
    look: str | None = None,
    quality: str = "medium",
    progress: bool = True,
    base: Any = None,
) -> ReplayResult:
    """Render a recording to an H.264 mp4, one rendered frame per video frame.

    Args:
        size: video size in pixels (even numbers).
        fps: video frame rate; the virtual clock advances exactly 1/fps per frame.
        camera: "tour" or "follow" (then `follow` names the avatar).
        times_s: render at these recorded local times instead (tests compare the live draw
            log with a replay at the same instants); the video still plays at `fps`.
        draw_log: write a `DrawLog` of every rendered frame here.
        screenshot: also save one frame as a PNG, at `screenshot_at_s` seconds into the
            video (default: 7 s after the scene starts, or two thirds of the way).
        base: an offscreen ShowBase to draw in (default: a new one of `size`, destroyed after).
    """
    from client.app import make_showbase

    if not 1 <= fps <= MAX_FPS:
        raise UserError(f"--fps must be between 1 and {MAX_FPS}, not {fps}")
    if not recording.frames:
        raise UserError(f"{recording.path} holds no frames from a server: nothing to replay")
    start_s = recording.frames[0][0]  # the first frame (the welcome): the bar appears
    if times_s is None:
        n = max(1, math.floor((recording.end_s - start_s) * fps) + 1)
        times = start_s + np.arange(n) / fps
    else:
        times = np.asarray(list(times_s), float)
    played_s = scene_start_s(recording)
    own_base = base is None
    if own_base:
        base = make_showbase(True, size, "Neon Bar replay")
    out = Path(out)
    try:
        return _render(
            recording, out, base, size=size, fps=fps, camera=camera, follow=follow,
            times=times, start_s=start_s, played_s=played_s, draw_log=draw_log,
            screenshot=screenshot, screenshot_at_s=screenshot_at_s, look=look,
            quality=quality, progress=progress,
        )  # fmt: skip
    finally:
        if own_base:
            base.destroy()


def _render(
    recording: Recording,
    out: Path,
    base: Any,
    *,
    size: tuple[int, int],
    fps: int,
    camera: str,
    follow: str | None,
    times: np.ndarray,
    start_s: float,
    played_s: float | None,
    draw_log: str | Path | None,
    screenshot: str | Path | None,
    screenshot_at_s: float | None,
    look: str | None,
    quality: str,
    progress: bool,
) -> ReplayResult:
    from panda3d.core import ClockObject

    from client.app import NeonBarApp
    from client.presenter import film_mode
    from client.tour import FollowCamera, Tour, TourCamera
    from neonbar.video import H264Writer

    session = RecordedSession(recording)
    session.advance(start_s)
    clock = base.clock
    clock.setMode(ClockObject.MNonRealTime)
    clock.setFrameRate(fps)
    extra: dict[str, Any] = {}
    media_root: Path | None = None
    if "watch_options" in getattr(NeonBarApp, "__dataclass_fields__", {}):
        from client.watch import WatchOptions

        media_root = local_media(recording)
        extra["watch_options"] = WatchOptions(data_dir=media_root)
    app = NeonBarApp(
        base,
        session,  # type: ignore[arg-type]  # has the Session surface
        name=str(recording.header.get("name", "replay")),
        look=look,
        quality=quality,
        clock=lambda: session.now_s,
        **extra,
    )
    app.motion = ScriptedMotion(recording, session, collision=app.motion.collision)  # type: ignore[assignment]
    rig = app.camera
    followed: list[int] = []
    if camera == "follow":
        assert follow is not None

        def locate() -> tuple[float, float, float] | None:
            avatar_id = session.avatar_named(follow)
            if avatar_id is None:
                return None
            followed.append(avatar_id)
            if avatar_id == session.you:
                return app.motion.shown()
            ids, pos, yaw = session.remote_avatars(REMOTE_DELAY_S)
            hit = np.flatnonzero(np.asarray(ids) == avatar_id)
            if not len(hit):
                return None
            k = int(hit[0])
            return float(pos[k, 0]), float(pos[k, 1]), float(yaw[k])

        app.camera = FollowCamera(rig, locate)  # type: ignore[assignment]
    else:
        tour = Tour.for_layout(app.layout)
        if played_s is not None:
            tour = tour.fitted(played_s - start_s)
            turn_s = scene_change_s(recording, played_s)
            if turn_s is not None:  # the film watches the screen as the branch's choice begins
                tour = tour.aligned_to_branch(turn_s - start_s)
        app.camera = TourCamera(  # type: ignore[assignment]
            rig, tour, clock=lambda: session.now_s, interruptible=False,
            crowd=app.crowd, you=lambda: session.you,
        )  # fmt: skip
    film_mode(app)
    writer = H264Writer(out, size=size, fps=fps)
    log_file = Path(draw_log).open("w") if draw_log else None  # noqa: SIM115 - closed below
    drawn = DrawLog(app, log_file, clock=lambda: session.now_s) if log_file else None
    if screenshot_at_s is None and played_s is not None:
        screenshot_at_s = played_s - start_s + SCREENSHOT_AFTER_PLAY_S
    shot_k = round(screenshot_at_s * fps) if screenshot_at_s is not None else (2 * len(times)) // 3
    started = time.perf_counter()
    notes: list[str] = []
    bar = _progress(len(times), out.name) if progress else None
    written = 0
    try:
        for k, t_s in enumerate(times):
            session.advance(float(t_s))
            _wait_for_screen(app)
            base.taskMgr.step()
            img = grab_rgb(base)
            if img is None:
                raise UserError("the offscreen renderer gave no image; is Mesa's EGL installed?")
            if img.shape[:2] != (size[1], size[0]):
                img = _fit(img, size)
            writer.write(img)
            written += 1
            if screenshot is not None and k == min(shot_k, len(times) - 1):
                _save_png(img, Path(screenshot))
            if bar is not None:
                bar.update(1)
        if follow is not None and not followed:
            notes.append(f"nobody called {follow!r} was in the recording; followed our avatar")
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
        if drawn is not None and log_file is not None:
            drawn.close()
            log_file.close()
        app.destroy()
        if media_root is not None:
            shutil.rmtree(media_root, ignore_errors=True)
        clock.setMode(ClockObject.MNormal)
    return ReplayResult(
        out=out,
        frames=written,
        fps=fps,
        size=size,
        duration_s=written / fps,
        render_s=time.perf_counter() - started,
        camera=camera if follow is None else f"follow {follow}",
        frames_fed=session.frames_fed,
        notes=notes,
    )


def _wait_for_screen(app: Any) -> None:
    """Offline there is no hurry: let the big screen's decoder catch up with the frame due,
    so the film shows every frame of the scene instead of the last one it had."""
    watch = getattr(app, "watch", None)
    screen = getattr(watch, "screen", None)
    source = getattr(screen, "source", None)
    timeline = getattr(watch, "timeline", None)
    if source is None or timeline is None or not timeline.frames:
        return
    last = max(0, (source.info.frames or timeline.frames) - 1)
    index = min(timeline.frame_at(app.session.server_time()), last)
    source.want(index)
    deadline = time.monotonic() + SCREEN_WAIT_S
    while not source.ready(index) and not source.error and time.monotonic() < deadline:
        time.sleep(0.002)


def timelines(recording: Recording) -> list[tuple[float, dict[str, Any]]]:
    """Every timeline the recording received (in `welcome` and `timeline` events), with its
    local receive time."""
    from neonbar import protocol

    found: list[tuple[float, dict[str, Any]]] = []
    for t_s, frame in recording.frames:
        if isinstance(frame, bytes) and b"media" not in frame:
            continue  # cheap skip: snapshots and most events never name media
        try:
            msg = protocol.decode_server(frame)
        except protocol.ProtocolError:
            continue
        if msg.get("t") == "welcome":
            timeline = msg.get("timeline")
        elif msg.get("t") == "event" and msg.get("kind") == "timeline":
            timeline = msg
        else:
            continue
        if isinstance(timeline, dict):
            found.append((t_s, timeline))
    return found


def media_hashes(recording: Recording) -> dict[str, str | None]:
    """The scene media a recording's timeline names: {sha256: scene name or None}."""
    found: dict[str, str | None] = {}
    for _, timeline in timelines(recording):
        if isinstance(timeline.get("media"), str):
            scene = timeline.get("scene")
            found[timeline["media"]] = scene if isinstance(scene, str) else None
    return found


def scene_start_s(recording: Recording) -> float | None:
    """The local time a scene first played (with its media ready), or None."""
    for t_s, tl in timelines(recording):
        if tl.get("playing") and tl.get("media") and tl.get("status") not in ("missing",):
            return t_s
    return None


def scene_change_s(recording: Recording, after_s: float) -> float | None:
    """The local time the room first moved on from the scene playing at `after_s` to another
    (a branch point's choice, the host's next scene), or None."""
    first: Any = None
    for t_s, tl in timelines(recording):
        if t_s < after_s:
            continue
        if first is None:
            first = tl.get("scene")
        elif tl.get("scene") != first:
            return t_s
    return None


def local_media(recording: Recording) -> Path:
    """A media cache for the replay holding the recording's scene media from this machine.

    The server that served the media is gone; the same bytes are in the client's own media
    cache or are a scene rendered here (neonbar.scenes). Each is linked in only when its
    sha256 matches the one the timeline named, so a replay never shows another cut.
    """
    import tempfile

    from client.media import MediaCache
    from client.watch import default_data_dir

    root = Path(tempfile.mkdtemp(prefix="neonbar-replay-media-"))
    cache = MediaCache(root)
    cache.dir.mkdir(parents=True, exist_ok=True)
    home = MediaCache(default_data_dir())
    for sha256, scene in media_hashes(recording).items():
        found = home.get(sha256) or _scene_media(sha256, scene)
        if found is None:
            log.warning("the media of scene %s (%s…) is not on this machine", scene, sha256[:12])
            continue
        target = cache.path(sha256)
        try:
            target.symlink_to(found.resolve())
        except OSError:
            shutil.copyfile(found, target)
    return root


def _scene_media(sha256: str, scene: str | None) -> Path | None:
    try:
        from neonbar import scenes
    except ImportError:
        return None
    candidates = []
    try:
        if scene:
            candidates.append(scenes.load_scene(scene))
        candidates += scenes.list_scenes()
    except UserError:
        pass
    paths: list[Path] = []
    for spec in candidates:
        try:
            paths.append(scenes.media_path(spec, render=False))
        except UserError:
            continue
    # Renders made by another generator version are still the bytes that were shown then.
    paths += sorted((scenes.cache_dir() / "renders").glob("*.mp4"))
    for path in paths:
        if path.is_file() and not path.name.startswith(".") and scenes.media_hash(path) == sha256:
            return path
    return None


def _fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA))


def _save_png(rgb: np.ndarray, path: Path) -> None:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise UserError(f"cannot write the screenshot {path}")


def _progress(total: int, label: str) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=total, desc=f"rendering {label}", unit="frame", file=sys.stderr, leave=False,
        dynamic_ncols=True, mininterval=1.0,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ CLI


def _not_recorded_errors(record: logging.LogRecord) -> bool:
    """The session's own error frames come through the client again as it replays: they
    were news during the session (and are in the server's log), not now."""
    return not record.getMessage().startswith("server error")


def run(args: Any) -> int:
    """`neonbar replay SESSION --out F.mp4 [--camera tour|follow NAME] [--size WxH] [--fps N]`."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_recorded_errors)
    mode, name = parse_camera(args.camera)
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise UserError(f"--out needs an .mp4 file name, not {out}")
    if not out.resolve().parent.is_dir():
        raise UserError(f"cannot write {out}: its folder does not exist")
    w, h = args.size
    if w % 2 or h % 2:
        raise UserError(f"--size {w}x{h} must be even in both directions (H.264 yuv420p)")
    recording = read_session(args.session)
    shot = getattr(args, "screenshot", None)
    if shot and Path(shot).suffix.lower() != ".png":
        raise UserError(f"--screenshot needs a .png file name, not {shot}")
    if shot and not Path(shot).resolve().parent.is_dir():
        raise UserError(f"cannot write {shot}: its folder does not exist")
    result = render(
        recording, out, size=(w, h), fps=args.fps, camera=mode, follow=name, screenshot=shot,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"wrote {result.out}: {result.frames} frames at {result.fps} fps "
        f"({result.duration_s:.1f} s, {result.size[0]}x{result.size[1]}, H.264), "
        f"rendered in {result.render_s:.0f} s"
    )
    if shot:
        print(f"wrote {shot}")
    return 0
