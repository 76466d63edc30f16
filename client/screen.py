"""The big screen: frame-accurate playback of the room's scene.

Panda3D's MovieTexture keeps its own clock, is not frame-accurate and starts black for ~0.3 s, so
the screen decodes frames itself: `FrameSource` runs PyAV on a thread and keeps a small ring of
decoded frames just ahead of the play head; `BigScreen` asks the play head (neonbar.playback) for
the frame due at the estimated server time and uploads exactly that frame to the screen's
texture, once, when it changes. What was uploaded is what `--playback-log` records.

`frame_code` / `read_frame_code` draw and read a frame number as a strip of 16 black-or-white
blocks along the top of a frame, which survives H.264 and scaling: the tests (and anyone
checking two screens with a camera) read back which frame is really on the screen.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from neonbar.playback import Playhead, Timeline

log = logging.getLogger("neonbar.screen")

RING_AHEAD = 24  # decoded frames kept ahead of the play head: 1 s at 24 fps (a CPU-starved
# decoder thread was seen to fall 1.1 s behind while another client started on a 2-core box)
RING_BEHIND = 2
# A wanted frame this far past what the decoder holds is reached by seeking, not decoding on.
SEEK_AFTER_FRAMES = 48
CODE_BITS = 16


# ------------------------------------------------------------------------------ frame codes


def frame_code(image: np.ndarray, number: int, band: float = 0.12) -> None:
    """Draw `number` (0 .. 65535) into the top `band` of `image` (H, W, 3 uint8) in place."""
    h, w = image.shape[:2]
    rows = max(2, int(h * band))
    edges = np.linspace(0, w, CODE_BITS + 1).astype(int)
    for bit in range(CODE_BITS):
        on = (number >> (CODE_BITS - 1 - bit)) & 1
        image[:rows, edges[bit] : edges[bit + 1]] = 255 if on else 0


def read_frame_code(image: np.ndarray, band: float = 0.12, top: bool = True) -> int:
    """Read a number drawn by `frame_code`; `top=False` if the image rows run bottom-up."""
    h, w = image.shape[:2]
    rows = max(2, int(h * band))
    mid = rows // 2 if top else h - 1 - rows // 2
    edges = np.linspace(0, w, CODE_BITS + 1)
    centres = ((edges[:-1] + edges[1:]) / 2).astype(int)
    grey = np.asarray(image[mid, centres], np.float32).reshape(CODE_BITS, -1).mean(axis=1)
    number = 0
    for value in grey:
        number = (number << 1) | int(value > 127)
    return number


# ------------------------------------------------------------------------------ decoding


@dataclass
class MediaInfo:
    fps: float
    frames: int
    width: int
    height: int


def probe(path: Path) -> MediaInfo:
    """Frame rate, frame count and size of a video file (UserError if it is not one)."""
    from neonbar.video import probe as probe_video

    info = probe_video(path)
    return MediaInfo(info.fps, info.frames, info.width, info.height)


class FrameSource:
    """Decodes one video file on a daemon thread into a ring of frames near the play head.

    `want(index)` tells the thread where the play head is; `get(index)` returns that frame if it
    is decoded (never blocks). Frames are scaled to `size` (W, H) in BGR, rows top-down, ready
    for a Panda3D RGB texture.
    """

    def __init__(self, path: Path, size: tuple[int, int], info: MediaInfo | None = None) -> None:
        self.path = Path(path)
        self.info = info or probe(self.path)
        self.size = size
        self.error: str | None = None
        self.decoded = 0
        self.seeks = 0
        self._ring: OrderedDict[int, np.ndarray] = OrderedDict()
        self._want = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="neonbar-decode", daemon=True)
        self._thread.start()

    def want(self, index: int) -> None:
        with self._cond:
            if index != self._want:
                self._want = index
                self._cond.notify()

    def get(self, index: int) -> np.ndarray | None:
        with self._cond:
            return self._ring.get(index)

    def ready(self, index: int) -> bool:
        with self._cond:
            return index in self._ring

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(2.0)

    # ------------------------------------------------------------------- decoder thread

    def _run(self) -> None:
        import av

        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                self._decode_loop(container, stream)
        except Exception as exc:  # a broken file shows a message, never kills the client
            log.warning("cannot decode %s: %s", self.path.name, exc)
            self.error = f"cannot play {self.path.name}: {exc}"

    def _decode_loop(self, container: Any, stream: Any) -> None:
        time_base = float(stream.time_base)
        start_pts = stream.start_time or 0
        fps = self.info.fps
        w, h = self.size
        frames: Any = None  # the decoding iterator since the last seek
        next_index = 0  # the index the decoder produces next
        while True:
            with self._cond:
                while not self._stop and self._has_enough(next_index):
                    self._cond.wait(0.5)
                if self._stop:
                    return
                want = self._want
                behind = want < next_index or want > next_index + SEEK_AFTER_FRAMES
                seek = frames is None or (want not in self._ring and behind)
                if seek:
                    self._ring.clear()
            if seek:
                # Land on the keyframe before the wanted frame, then decode forward to it.
                target_pts = start_pts + int(max(0.0, (want - 0.5) / fps) / time_base)
                container.seek(target_pts, backward=True, any_frame=False, stream=stream)
                self.seeks += 1
                frames = container.decode(stream)
                next_index = want  # frames before it are decoded and dropped on the way
            try:
                frame = next(frames)
            except StopIteration:
                frames = None
                with self._cond:  # at the end: wait until a frame we do not hold is wanted
                    while not self._stop and (
                        self._want in self._ring or self._want >= self.info.frames
                    ):
                        self._cond.wait(0.5)
                continue
            if frame.pts is None:
                continue
            index = round((frame.pts - start_pts) * time_base * fps)
            with self._cond:
                want = self._want
            if index < want - RING_BEHIND:
                continue  # decoding forward from a keyframe toward the wanted frame
            next_index = index + 1
            image = frame.to_ndarray(format="bgr24", width=w, height=h)
            self.decoded += 1
            with self._cond:
                self._ring[index] = image
                for old in [k for k in self._ring if k < self._want - RING_BEHIND]:
                    del self._ring[old]
                while len(self._ring) > RING_AHEAD + RING_BEHIND + 1:
                    self._ring.popitem(last=False)

    def _has_enough(self, next_index: int) -> bool:
        """Held under the lock: the ring covers the play head and enough after it."""
        want = self._want
        if want not in self._ring:
            return False
        return next_index > min(want + RING_AHEAD, self.info.frames - 1)


# -------------------------------------------------------------------------------- sound

AUDIO_RESEEK_S = 0.08  # lips visibly off past ~80 ms: re-seek the sound to the play head


def has_audio(path: Path) -> bool:
    import av

    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except av.error.FFmpegError:
        return False


class ScreenAudio:
    """The clip's sound through Panda3D's audio (FFmpeg reads it from the mp4), held to the
    play head: started, paused, re-rated and re-seeked when it drifts past 80 ms. Offscreen the
    audio library is "null": the same calls, no sound."""

    def __init__(self, base: Any, path: Path) -> None:
        self.sound = base.loader.loadSfx(str(path))
        self.reseeks = 0
        self._playing = False

    def update(self, timeline: Timeline, position_s: float) -> None:
        from panda3d.core import AudioSound

        sound = self.sound
        if sound is None:
            return
        if not (timeline.playing and position_s < timeline.duration_s):
            if self._playing:
                sound.stop()
                self._playing = False
            return
        if abs(sound.getPlayRate() - timeline.rate) > 1e-6:
            sound.setPlayRate(timeline.rate)
        if not self._playing or sound.status() != AudioSound.PLAYING:
            sound.setTime(position_s)
            sound.play()
            self._playing = True
        elif abs(sound.getTime() - position_s) > AUDIO_RESEEK_S:
            sound.setTime(position_s)
            self.reseeks += 1

    def destroy(self) -> None:
        if self.sound is not None:
            self.sound.stop()


# ------------------------------------------------------------------------------- the screen


@dataclass
class PlaybackLog:
    """`--playback-log F.jsonl`: one line per drawn frame, flushed every second."""

    path: Path
    _file: IO[str] | None = None
    _last_flush: float = 0.0

    def write(self, local_s: float, server_s: float, timeline: Timeline, frame: int | None,
              action: str) -> None:  # fmt: skip
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        line = {
            "t": round(local_s, 6),
            "st": round(server_s, 6),
            "frame": frame,
            "scene": timeline.scene,
            "ver": timeline.version,
            "playing": timeline.playing,
            "due": timeline.frame_at(server_s) if timeline.frames else None,
            "act": action,
        }
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        if local_s - self._last_flush > 1.0:
            self._last_flush = local_s
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class BigScreen:
    """The scene on the bar's big screen (client/world.py builds the panel; this fills it).

    Args:
        base: the ShowBase.
        screen: the world's big-screen node (World.screen); the picture is a card on it.
        width_m, height_m: the panel's size.
        idle: the node shown between scenes (World.screen_idle), hidden while a scene plays.
        texture_size: the size frames are decoded to (W, H).
        playback_log: where to write the per-frame trace, or None.
    """

    base: Any
    screen: Any
    width_m: float
    height_m: float
    idle: Any = None
    texture_size: tuple[int, int] = (640, 360)
    playback_log: PlaybackLog | None = None
    playhead: Playhead = field(default_factory=Playhead)
    source: FrameSource | None = None
    audio: ScreenAudio | None = None
    shown_frame: int | None = None
    uploads: int = 0
    upload_s: float = 0.0

    def __post_init__(self) -> None:
        from panda3d.core import CardMaker, Texture, TransparencyAttrib

        w, h = self.texture_size
        self.texture = Texture("big-screen-frame")
        self.texture.setup2dTexture(w, h, Texture.T_unsigned_byte, Texture.F_rgb8)
        self.texture.setKeepRamImage(True)
        self.texture.setMinfilter(Texture.FT_linear)
        self.texture.setMagfilter(Texture.FT_linear)
        card = CardMaker("big-screen-picture")
        # A 16:9 picture letterboxed inside the panel.
        pw, ph = self._fit(w / h)
        card.setFrame(-pw / 2, pw / 2, (self.height_m - ph) / 2, (self.height_m + ph) / 2)
        card.setUvRange((0, 1), (1, 0))  # frames arrive top row first
        self.card = self.screen.attachNewNode(card.generate())
        self.card.setY(-0.012)  # just in front of the idle panel
        self.card.setTexture(self.texture)
        self.card.setLightOff(1)
        self.card.setFogOff(1)
        self.card.setTransparency(TransparencyAttrib.MNone)
        self.card.hide()
        # A sentence on the screen (fetching 40 %, preparing, missing media): never a silent
        # black panel.
        from panda3d.core import TextNode

        from client import fonts

        self._message = TextNode("big-screen-message")
        font = fonts.load_font(self.base.loader, fonts.latin_font_path())
        if font is not None:
            self._message.setFont(font)
        self._message.setAlign(TextNode.ACenter)
        self._message.setTextColor(1.0, 0.78, 0.45, 1)
        self._message.setWordwrap(self.width_m / (self.height_m * 0.07))
        self._message.setCardColor(0.02, 0.02, 0.05, 0.8)
        self._message.setCardAsMargin(0.6, 0.6, 0.4, 0.4)
        self._message_np = self.screen.attachNewNode(self._message)
        self._message_np.setScale(self.height_m * 0.07)
        self._message_np.setPos(0, -0.02, self.height_m * 0.5)
        self._message_np.setLightOff(1)
        self._message_np.setFogOff(1)
        self._message_np.setTransparency(TransparencyAttrib.MAlpha)
        self._message_np.hide()
        self._message_text: str | None = None
        self._scene: str | None = None
        self._media: str | None = None
        self._last_local: float | None = None

    def _fit(self, aspect: float) -> tuple[float, float]:
        pw, ph = self.width_m, self.width_m / aspect
        if ph > self.height_m:
            ph, pw = self.height_m, self.height_m * aspect
        return pw, ph

    def set_media(self, path: Path | None, sha256: str | None,
                  info: MediaInfo | None = None) -> None:  # fmt: skip
        """Play this file from now on (None: nothing to show); `info` saves probing it."""
        if sha256 == self._media and (path is None) == (self.source is None):
            return
        if self.source is not None:
            self.source.close()
            self.source = None
        if self.audio is not None:
            self.audio.destroy()
            self.audio = None
        self._media = sha256
        self.shown_frame = None
        self.playhead.reset()
        if path is not None:
            self.source = FrameSource(path, self.texture_size, info)
            if has_audio(path):
                self.audio = ScreenAudio(self.base, path)
        self._show_picture(False)

    def show_message(self, text: str | None) -> None:
        """Show a sentence across the screen (None hides it)."""
        if text == self._message_text:
            return
        self._message_text = text
        if text:
            self._message.setText(text)
            self._message_np.show()
        else:
            self._message_np.hide()

    def _show_picture(self, on: bool) -> None:
        if on:
            self.card.show()
            if self.idle is not None:
                self.idle.hide()
        else:
            self.card.hide()
            if self.idle is not None:
                self.idle.show()

    def update(self, timeline: Timeline, server_s: float, local_s: float,
               exact: bool = False) -> int | None:  # fmt: skip
        """Upload the frame due at `server_s` if it differs from the one shown; log it.

        `exact`: the clock is still settling; show the frame due without slewing toward it.
        Returns the index of the frame on the screen (None: nothing shown).
        """
        dt_s = 0.0 if self._last_local is None else local_s - self._last_local
        self._last_local = local_s
        action = "idle"
        source = self.source
        if source is not None and timeline.media == self._media and timeline.frames:
            step = self.playhead.update(timeline, server_s, dt_s, exact)
            action = step.action
            index = min(step.frame, source.info.frames - 1) if source.info.frames else step.frame
            source.want(index)
            if self.audio is not None:
                self.audio.update(timeline, step.position_s)
            if index != self.shown_frame:
                image = source.get(index)
                if image is not None:
                    self._upload(image)
                    self.shown_frame = index
                    if self.card.isHidden():  # the first frame of each media, not just the first
                        self._show_picture(True)
                else:
                    action = "wait"  # the decoder has not got there yet: keep the last frame
        if self.playback_log is not None:
            self.playback_log.write(local_s, server_s, timeline, self.shown_frame, action)
        return self.shown_frame

    def _upload(self, image: np.ndarray) -> None:
        t0 = time.thread_time()  # CPU time of the frame loop: what counts toward its budget
        self.texture.setRamImage(memoryview(np.ascontiguousarray(image)).cast("B"))
        self.uploads += 1
        self.upload_s += time.thread_time() - t0

    def texture_image(self) -> np.ndarray | None:
        """What the screen's texture holds now (H, W, 3 BGR, rows as uploaded)."""
        if not self.texture.hasRamImage():
            return None
        w, h = self.texture_size
        data = np.frombuffer(bytes(self.texture.getRamImage()), np.uint8)
        return data.reshape(h, w, 3)

    def destroy(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
        if self.audio is not None:
            self.audio.destroy()
            self.audio = None
        if self.playback_log is not None:
            self.playback_log.close()
        self.card.removeNode()
        self._message_np.removeNode()


__all__ = [
    "BigScreen",
    "FrameSource",
    "MediaInfo",
    "PlaybackLog",
    "ScreenAudio",
    "frame_code",
    "probe",
    "read_frame_code",
]
