"""The desktop client: wires the bar, the avatars, the HUD, input, camera and network together.

Not a ShowBase subclass: `NeonBarApp` is handed a ShowBase and a session (a `client.net.NetSession`
or anything with the same methods, e.g. a test double) and owns small pieces that each do one
thing. One frame task (sort 10) reads the network and input and moves everything; a second task
after drawing (sort 55) takes screenshots and video frames.

`run(args)` is `neonbar client`: it configures Panda3D (a window, or EGL offscreen with
`--offscreen`), joins the room and runs until the window closes or the capture is done.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import math
import os
import signal
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from neonbar.drinks import TIPSY_PER_DRINK, tipsy_level
from neonbar.errors import UserError
from neonbar.layout import Layout, load_layout

log = logging.getLogger("neonbar.client")

REMOTE_DELAY_S = 0.1  # render others 100 ms in the past: two snapshots to interpolate between
TASK_SORT = 10
CAPTURE_SORT = 55  # after igLoop (50) has drawn the frame
BAR_REACH_M = 2.6
PEOPLE_ROWS = 24  # how close to the counter you must be to order
NAME_COLORS = ("#ff2d55", "#2de2ff", "#b13dff", "#39ff88", "#ff8a1f", "#ff3fb4", "#ffe14d")


class Session(Protocol):
    """What the app needs from the network (client.net.NetSession has it)."""

    state: Any
    ping_ms: float | None
    you: int | None
    role: str | None
    last_error: str | None
    roster: dict[int, dict[str, Any]]

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def set_local_state(self, x_m: float, y_m: float, yaw_rad: float) -> None: ...
    def send(self, msg: dict[str, Any]) -> None: ...
    def poll(self) -> list[dict[str, Any]]: ...
    def remote_avatars(self, delay_s: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    def correction(self) -> tuple[float, float, float, int] | None: ...
    def server_time(self) -> float: ...


# ------------------------------------------------------------------------------ Panda3D setup


def configure_panda(offscreen: bool, size: tuple[int, int], title: str = "Neon Bar") -> None:
    """Set prc variables; must run before ShowBase is created."""
    from panda3d.core import loadPrcFileData

    w, h = size
    # Quiet the display probing chatter (input devices, EGL fallbacks); errors still show.
    lines = [
        f"win-size {w} {h}",
        f"window-title {title}",
        "notify-level-device fatal",
        "notify-level-display error",
        "print-pipe-types false",  # ShowBase lists the display modules on stdout otherwise
    ]
    if offscreen:
        lines += ["load-display p3headlessgl", "window-type offscreen", "audio-library-name null"]
    else:
        # No multisampled window: the post chain draws the bar into its own buffer, so the
        # window's samples would smooth only the HUD, and on Mesa's llvmpipe they doubled the
        # cost of a 1280x720 frame (230 against 117 CPU-ms).
        lines += ["sync-video true"]
        if not _has_audio_output():  # OpenAL would print a page of ALSA errors, then go silent
            lines.append("audio-library-name null")
    loadPrcFileData("neonbar-client", "\n".join(lines) + "\n")


def _has_audio_output() -> bool:
    """On Linux, a sound server or a sound card to play the clink on (a VM or Xvfb has none)."""
    if not sys.platform.startswith("linux"):
        return True
    runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or "/nonexistent")
    return bool(
        os.environ.get("PULSE_SERVER")
        or (runtime / "pulse" / "native").exists()
        or (runtime / "pipewire-0").exists()
        or any(Path("/dev/snd").glob("pcmC*p"))
    )


def make_showbase(offscreen: bool, size: tuple[int, int], title: str = "Neon Bar") -> Any:
    configure_panda(offscreen, size, title)
    from direct.showbase.ShowBase import ShowBase

    try:
        return ShowBase()
    except Exception as exc:  # no GL at all: say what to do instead of a traceback
        how = "install Mesa's EGL (make system-deps)" if offscreen else "try --offscreen"
        raise UserError(
            f"cannot open a {'buffer' if offscreen else 'window'} ({exc}); {how}"
        ) from None


def color_for(name: str) -> str:
    """A stable neon colour per name, so people keep their colour across sessions."""
    return NAME_COLORS[hashlib.sha1(name.encode()).digest()[0] % len(NAME_COLORS)]


def clink_sound(path: Path) -> Path:
    """Synthesize a glass clink (a few inharmonic partials, fast decay) as a WAV file."""
    rate = 22050
    t = np.arange(int(rate * 0.9)) / rate
    tone = sum(
        a * np.sin(2 * math.pi * f * t) * np.exp(-t * d)
        for f, a, d in ((2489, 1.0, 7), (3733, 0.6, 9), (5128, 0.4, 12), (6910, 0.2, 16))
    )
    pcm = (np.clip(tone / 2.2, -1, 1) * 30000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


# ------------------------------------------------------------------------------------ the app


@dataclass
class NeonBarApp:
    """One participant's view of the bar.

    Args:
        base: the ShowBase to draw in (window or offscreen buffer).
        session: the network session, already started or not; None runs the bar offline
            (a local avatar only, for previews and tests).
        layout: the bar; default scenes/bar.toml.
        name: our display name (the server may replace it).
        look/quality: colour grade and post-processing preset for client.post.
        post: build the shader post chain (bloom, haze, grading) when it is available.
    """

    base: Any
    session: Session | None = None
    layout: Layout = field(default_factory=load_layout)
    name: str = "guest"
    look: str | None = None
    quality: str = "medium"
    post: bool = True
    capture: Any = None
    watch_options: Any = None  # client.watch.WatchOptions: media cache, --playback-log
    reaction_source: tuple[int | None, str | None] = (None, None)  # --webcam, --reaction-video
    done: bool = False
    you: int | None = None
    # The clock animations, toasts and captures run on; a replay hands in its virtual clock.
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        # Imported here, not at the top: `neonbar client` must set Panda3D's prc variables
        # (offscreen, window size) before any Panda3D module is loaded.
        from client.avatars import Crowd
        from client.camera import CameraRig
        from client.controls import Controls
        from client.hud import Hud
        from client.prediction import LocalMotion, make_collision
        from client.world import World

        self.world = World(self.base, self.layout).build()
        self.crowd = Crowd(self.base)
        self.world.reflect(self.crowd.root)
        self.hud = Hud(self.base, self._send, clock=self.clock)
        self.camera = CameraRig(self.base, self.layout)
        sx, sy = self.layout.spawn
        self.motion = LocalMotion(
            self.layout, sx, sy, math.radians(self.layout.spawn_yaw_deg),
            collision=make_collision(self.layout),
        )  # fmt: skip
        self.controls = Controls(
            self.base,
            actions={
                "cheers": lambda: self._emote("cheers"),
                "wave": lambda: self._emote("wave"),
                "view": self.camera.toggle,
                "menu": self._open_menu,
                "chat": self.hud.open_chat,
                "people": self._toggle_people,
                "help": self.hud.toggle_help,
                "collision": self._toggle_collision_debug,
                "escape": self._escape,
                "shot": self._quick_screenshot,
                "look": self._next_look,
            },
            captured=lambda: self.hud.captures_keys or self._typing_note(),
            menu_key=self.hud.menu_key,
        )
        self.postchain = self._make_post() if self.post else None
        self.watch = self._make_watch()
        self.share = self._make_share()
        self._collision_debug: Any = None
        self._clink: Any = None
        self._last_people = 0.0
        self._last_tipsy = 0.0
        self._poor_link = 0.0
        self.beats = self._make_beats()
        if self.session is None:
            self.you = 0
            self.crowd.ensure(0, self.name, color_for(self.name))
        self._load_sound()
        self.base.taskMgr.add(self._frame, "neonbar-frame", sort=TASK_SORT)
        self.base.taskMgr.add(self._after_draw, "neonbar-capture", sort=CAPTURE_SORT)
        self._t0 = self.clock()

    # ------------------------------------------------------------------------------ pieces

    def _make_post(self) -> Any:
        try:
            from client.post import PostChain, display_scene_settings

            # The bar's colours are display values (baked light), not linear HDR; a touch less
            # exposure than the default keeps the room dark around the neon.
            settings = display_scene_settings()
            settings.exposure, settings.bloom_threshold, settings.bloom_strength = 0.95, 0.55, 0.8
            chain = PostChain(
                self.base, look=self.look or "orange_haze", quality=self.quality, settings=settings
            )
            self.world.use_post_haze()
            return chain
        except UserError:
            raise  # e.g. an unknown --look: the user should hear it
        except Exception as exc:  # a driver without float buffers still gets the bar
            log.warning("post-processing unavailable (%s); rendering without it", exc)
            return None

    def _load_sound(self) -> None:
        self._clink_path = Path(tempfile.gettempdir()) / f"neonbar-clink-{os.getpid()}.wav"
        try:
            self._clink = self.base.loader.loadSfx(str(clink_sound(self._clink_path)))
        except Exception as exc:  # no audio device is not an error
            log.info("no clink sound: %s", exc)

    def _send(self, msg: dict[str, Any]) -> None:
        if self.session is not None:
            self.session.send(msg)
        else:
            # Offline: echo social messages as if the server had sent them back.
            self._handle({**msg, "t": "event", "kind": msg["t"], "avatar": self.you, "seq": 0})

    def _emote(self, emote: str) -> None:
        self._send({"t": "emote", "emote": emote})

    def _at_bar(self) -> bool:
        x, y, _ = self.motion.shown()
        return any(
            abs(x - b.cx) <= b.hx + BAR_REACH_M and abs(y - b.cy) <= b.hy + BAR_REACH_M
            for b in self.layout.boxes
            if b.kind == "counter"
        )

    def _open_menu(self) -> None:
        if self._at_bar():
            self.hud.open_menu()
        else:
            self.hud.show_toast("Walk up to the bar to order a drink")

    def _toggle_people(self) -> None:
        self.hud.toggle_people(self._people_rows())

    def _people_rows(self) -> list[str]:
        roster = self.session.roster if self.session is not None else {}
        rows = []
        # Us first, then by id: with a full room the list is cut, never our own row.
        for avatar_id, entry in sorted(roster.items(), key=lambda kv: (kv[0] != self.you, kv[0])):
            me = avatar_id == self.you
            ping = self.session.ping_ms if (me and self.session) else None
            flags = [entry.get("role", "?")]
            if entry.get("muted"):
                flags.append("muted")
            drink = entry.get("drink")
            if isinstance(drink, dict):
                flags.append(str(drink.get("drink", "")))
            ping_text = f"{ping:4.0f} ms" if ping is not None else "   — "
            rows.append(f"{'▶' if me else ' '} {entry.get('name', '?'):<18} {ping_text}  "
                        + " · ".join(flags))  # fmt: skip
        if len(rows) > PEOPLE_ROWS:  # a full room would run off the screen
            rows = [*rows[: PEOPLE_ROWS - 1], f"  … and {len(rows) - PEOPLE_ROWS + 1} more"]
        return rows or ["(nobody yet)"]

    def _toggle_collision_debug(self) -> None:
        """F3: draw what the collision solver sees (client.collision_debug)."""
        if self._collision_debug is None:
            try:
                from client.collision_debug import CollisionDebugView
                from neonbar.collision import CollisionWorld
            except ImportError:
                self.hud.show_toast("collision shapes are not available in this build")
                return
            world = self.motion.collision or CollisionWorld(self.layout)
            self._collision_debug = CollisionDebugView(self.base.render, world)  # type: ignore[arg-type]
        shown = self._collision_debug.toggle()
        self.hud.show_toast("collision shapes on" if shown else "collision shapes off", 1.5)

    def _next_look(self) -> None:
        """L: the next colour grade; a host changes it for the whole room."""
        if self.postchain is None:
            self.hud.show_toast("colour grading is off in this session")
            return
        from client.post import LOOKS

        current = getattr(self.postchain, "look", None)
        look = LOOKS[(LOOKS.index(current) + 1) % len(LOOKS)] if current in LOOKS else LOOKS[0]
        if self.session is not None and self.session.role == "host":
            self.session.send({"t": "look", "look": look})  # comes back as a look event
        else:
            self._set_look(look)
        self.hud.show_toast(f"look: {look.replace('_', ' ')}", 1.5)

    def _escape(self) -> None:
        self.hud.help.hide()
        self.hud.people.hide()
        self.hud.close_menu()

    def _quick_screenshot(self) -> None:
        from client.capture import grab_frame

        img = grab_frame(self.base)
        if img is not None:
            import cv2

            path = f"neonbar-{time.strftime('%Y%m%d-%H%M%S')}.png"
            cv2.imwrite(path, img)
            self.hud.show_toast(f"saved {path}")

    # ---------------------------------------------------------------------------- events

    def _make_beats(self) -> Any:
        """Beats: keys 1-8, notes, the pointer; ticks, glyphs and pulses (client/beats_ui.py)."""
        from client.beats_ui import BeatsUi

        session = self.session

        def me() -> tuple[str, str | None]:
            entry = session.roster.get(self.you, {}) if session and self.you is not None else {}
            return str(entry.get("name") or self.name), session.role if session else "host"

        return BeatsUi(
            self.base, self.watch, self.crowd, send=self._send, me=me, you=lambda: self.you,
            toast=self.hud.show_toast, clock=self.clock, captured=lambda: self.hud.captures_keys,
        )  # fmt: skip

    def _typing_note(self) -> bool:
        beats = getattr(self, "beats", None)
        return bool(beats is not None and beats.typing)

    def _make_watch(self) -> Any:
        """The scene on the big screen and the timeline strip (client/watch.py)."""
        from client.watch import Watch

        session = self.session
        return Watch(
            self.base, self.world, self.layout,
            send=self._send,
            server_time=session.server_time if session is not None else self.clock,
            clock=self.clock,
            role=lambda: session.role if session is not None else "host",
            toast=self.hud.show_toast,
            captured=lambda: self.hud.captures_keys,
            options=self.watch_options,
            clock_settling=lambda: bool(getattr(session, "clock_settling", False)),
        )  # fmt: skip

    def _make_share(self) -> Any:
        """Webcam reactions (client/reactions/share.py): off unless a source was given."""
        from client.reactions.share import ReactionShare

        session = self.session
        watch = self.watch

        def scene_time() -> float | None:
            timeline = watch.timeline
            if timeline.scene is None or not timeline.playing:
                return None
            return float(timeline.position(session.server_time() if session else self.clock()))

        webcam, video = self.reaction_source
        return ReactionShare(
            self.base, self._send, self.crowd, lambda: self.you, scene_time,
            self.hud.show_toast, webcam=webcam, video=video,
            captured=lambda: self.hud.captures_keys,
        )  # fmt: skip

    def _handle(self, msg: dict[str, Any]) -> None:
        t = msg.get("t")
        line = self.share.on_message(msg)
        if line:
            self.hud.add_chat("", line, (0.6, 0.9, 1.0))
            self.hud.show_toast(line.split(" (")[0], 4.0)
        if t == "welcome":
            self.watch.on_welcome(msg)
        elif t == "event":
            self.watch.on_event(msg)
        now = self._now()
        self.beats.on_message(msg)
        if t == "welcome":
            self._on_welcome(msg)
        elif t == "event":
            self._on_event(msg, now)
        elif t == "error":
            text = str(msg.get("message", "error"))
            log.warning("server error %s: %s", msg.get("code"), text)
            self.hud.show_toast(text)

    def _on_welcome(self, msg: dict[str, Any]) -> None:
        from neonbar.protocol import CM_PER_M, units_to_yaw

        you = int(msg["you"])
        pos = msg.get("pos") or []
        if len(pos) == 3 and (not msg.get("resumed") or self.you != you):
            self.motion.place(pos[0] / CM_PER_M, pos[1] / CM_PER_M, float(units_to_yaw(pos[2])))
        if self.you is not None and self.you != you:
            self.crowd.leave(self.you)
        self.you = you
        roster = self.session.roster if self.session is not None else {}
        for avatar_id, entry in roster.items():
            fig = self.crowd.ensure(avatar_id, entry.get("name", ""), entry.get("color"))
            fig.set_name(entry.get("name", ""))
            fig.set_color(entry.get("color") or color_for(entry.get("name", "")))
            fig.set_drink(entry.get("drink") if isinstance(entry.get("drink"), dict) else None)
        self.hud.add_chat("", f"welcome to {self.layout.name}, {msg.get('name', self.name)}",
                          (1, 0.7, 0.3))  # fmt: skip
        look = msg.get("look")
        if look and self.postchain is not None and not self.look:
            self._set_look(str(look))

    def _who(self, avatar_id: Any) -> tuple[str, tuple[float, float, float]]:
        from client.avatars import hex_rgb

        entry = (self.session.roster if self.session is not None else {}).get(avatar_id, {})
        fig = self.crowd.figure(avatar_id) if isinstance(avatar_id, int) else None
        # A leave arrives after the roster has let the avatar go: its name tag still knows.
        tagged = fig.tag.node().getText() if fig is not None else ""
        name = (
            entry.get("name") or tagged or (self.name if avatar_id == self.you else f"#{avatar_id}")
        )
        color = entry.get("color") or (fig.color if fig else "#ffffff")
        return name, hex_rgb(color)

    def _on_event(self, msg: dict[str, Any], now: float) -> None:
        kind = msg.get("kind")
        avatar = msg.get("avatar")
        name, rgb = self._who(avatar)
        if kind == "join":
            fig = self.crowd.ensure(avatar, msg.get("name", ""), msg.get("color"))
            fig.set_name(msg.get("name", ""))
            fig.set_color(msg.get("color") or "#ffffff")
            if avatar != self.you:
                self.hud.add_chat("", f"{msg.get('name', name)} walked in", rgb)
        elif kind == "leave":
            if avatar != self.you:
                self.crowd.leave(avatar)
                self.hud.add_chat("", f"{name} left", rgb)
        elif kind == "chat":
            self.crowd.say(avatar, str(msg.get("text", "")), now)
            self.hud.add_chat(name, str(msg.get("text", "")), rgb)
        elif kind == "emote":
            offline = self.session is None  # online, the server decides clinks (below)
            partners = self.crowd.emote(avatar, str(msg.get("emote", "")), now, clink=offline)
            if partners:
                self._clinked(avatar, partners)
        elif kind == "clink":  # the server's clink rule (neonbar/clink.py)
            partners = [int(p) for p in msg.get("with", [])]
            self.crowd.clink(avatar, partners, now)
            self._clinked(avatar, partners)
        elif kind == "drink":
            fig = self.crowd.figure(avatar)
            drink = {k: msg.get(k) for k in ("drink", "color", "glow", "garnish")}
            if fig is not None:
                fig.set_drink(drink)
            if self.session is None:
                self.crowd.set_tipsy(avatar, self.crowd.tipsy(avatar) + TIPSY_PER_DRINK)
            self.hud.add_chat("", f"{name} ordered a {drink['drink']}", rgb)
        elif kind == "profile":
            fig = self.crowd.figure(avatar)
            if fig is not None and msg.get("name"):
                fig.set_name(msg["name"])
            if fig is not None and msg.get("color"):
                fig.set_color(msg["color"])
        elif kind == "mute":
            state = "muted" if msg.get("muted") else "unmuted"
            self.hud.add_chat("", f"{name} was {state}", rgb)
        elif kind == "kick":
            self.hud.add_chat("", f"{name} was shown the door", rgb)
            if avatar != self.you:
                self.crowd.leave(avatar)
        elif kind == "look":
            if msg.get("look"):
                self._set_look(str(msg["look"]))
        elif kind == "system":
            self.hud.add_chat("", str(msg.get("text", "")), (1, 0.8, 0.4))

    def _clinked(self, avatar: int, partners: list[int]) -> None:
        if self._clink is not None:
            self._clink.play()
        names = ", ".join(self._who(p)[0] for p in partners)
        self.hud.show_toast(f"*clink* {self._who(avatar)[0]} and {names}", 2.0)

    def _set_look(self, look: str) -> None:
        if self.postchain is None:
            return
        try:
            self.postchain.set_look(look)
        except Exception as exc:  # an unknown look from the server must not stop the bar
            log.warning("cannot switch to look %r: %s", look, exc)

    # ---------------------------------------------------------------------------- frame

    def _now(self) -> float:
        return self.clock() - getattr(self, "_t0", self.clock())

    def _frame(self, task: Any) -> int:
        dt = self.base.clock.getDt()
        now = self._now()
        session = self.session
        if session is not None:
            for msg in session.poll():
                try:
                    self._handle(msg)
                except Exception:  # one odd message must never take the bar down
                    log.exception(
                        "could not handle %r", msg.get("t") if isinstance(msg, dict) else msg
                    )

        x, y, yaw = self.motion.step(self.controls.read(), dt)
        # Only once we have taken in the welcome: before that our position is a guess, and the
        # server would see a jump from where it placed us.
        if session is not None and self.you is not None and self.you == session.you:
            session.set_local_state(x, y, yaw)
            self._reconcile(session)
        ids, pos, yaws = self._everyone()
        self.crowd.update(ids, pos, yaws, now, dt)
        sx, sy, syaw = self.motion.shown()
        # While recording, the camera sways slowly round the avatar: parallax for the video.
        orbit = 0.35 * math.sin(now * 0.25) if self.capture is not None else 0.0
        self.camera.update(sx, sy, syaw, dt, orbit)
        self._show_self()
        if now - self._last_tipsy > 0.5:
            self._last_tipsy = now
            self._update_tipsy()
            hint = "B order a drink · F1 keys" if self._at_bar() else "F1 keys"
            if self.hud.hint.text != hint:
                self.hud.hint.setText(hint)
        self._update_status(now)
        self.watch.update()
        self.beats.update()
        self.world.update(now)
        self.hud.update()
        return task.cont

    def _show_self(self) -> None:
        """Our own name tag would sit in the middle of the view; in first person, so would our
        head. (Our chat bubble stays: it shows what the others are reading.)"""
        fig = self.crowd.figure(self.you) if self.you is not None else None
        if fig is None:
            return
        fig.tag.hide()
        if self.camera.first_person != fig.root.isHidden():
            fig.root.hide() if self.camera.first_person else fig.root.show()

    def _reconcile(self, session: Session) -> None:
        corr = session.correction()
        if corr is None:
            return
        cx, cy, _, seq = corr
        sent_state = getattr(session, "sent_state", None)
        sent = sent_state(seq) if sent_state is not None else None
        self.motion.reconcile(cx, cy, seq, None if sent is None else (sent[0], sent[1]))

    def _everyone(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Remote avatars (interpolated) plus ours at its predicted, smoothed place."""
        if self.session is not None:
            ids, pos, yaw = self.session.remote_avatars(REMOTE_DELAY_S)
        else:
            ids, pos, yaw = np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0)
        if self.you is None:
            return ids, pos, yaw
        x, y, h = self.motion.shown()
        ids = np.append(np.asarray(ids, np.int64), self.you)
        pos = np.vstack([np.asarray(pos, float).reshape(-1, 2), [[x, y]]])
        yaw = np.append(np.asarray(yaw, float), h)
        return ids, pos, yaw

    def _update_tipsy(self) -> None:
        if self.session is None:
            return
        st = self.session.server_time()
        for avatar_id, entry in list(self.session.roster.items()):
            level = float(entry.get("tipsy") or 0.0)
            since = entry.get("tipsy_st")
            if isinstance(since, (int, float)):
                level = tipsy_level(level, since, st)  # the server's level, decayed since
            self.crowd.set_tipsy(avatar_id, level)
            fig = self.crowd.figure(avatar_id)
            if fig is not None and not fig.emote:
                want = "tipsy" if level >= 0.5 else "neutral"
                if fig.expression != want:
                    fig.set_expression(want)

    def _update_status(self, now: float) -> None:
        if self.session is None:
            self.hud.set_status("offline", None, None)
            return
        state = getattr(self.session.state, "name", str(self.session.state)).lower()
        self.hud.set_status(state, self.session.ping_ms, self.session.last_error)
        poor = state != "connected" or (self.session.ping_ms or 0) > 250
        target = 0.5 if poor else 0.0
        if self.postchain is not None and abs(target - self._poor_link) > 1e-3:
            self._poor_link = target
            try:
                self.postchain.set_glitch(target)
            except Exception:
                log.debug("glitch unavailable", exc_info=True)
        if not self.hud.people.isHidden() and now - self._last_people > 0.5:
            self._last_people = now
            self.hud.set_people(self._people_rows())

    def _after_draw(self, task: Any) -> int:
        if self.capture is not None:
            self.capture.update(self.clock())
        return task.cont

    # ---------------------------------------------------------------------------- teardown

    def stop(self) -> None:
        """Leave the main loop (capture finished, window closed)."""
        self.done = True
        self.base.taskMgr.stop()

    def destroy(self) -> None:
        self.base.taskMgr.remove("neonbar-frame")
        self.base.taskMgr.remove("neonbar-capture")
        if self.session is not None:
            self.session.stop()
        if self.postchain is not None:
            try:
                self.postchain.cleanup()
            except Exception:
                log.debug("post chain cleanup failed", exc_info=True)
        self.beats.destroy()
        self.controls.release()
        self.share.destroy()
        self.watch.destroy()
        self.hud.destroy()
        self._clink_path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------- CLI


def _check_server(url: str) -> None:
    if not url.startswith(("ws://", "wss://")):
        raise UserError(f"--server must be a ws:// or wss:// address or a join link, not {url!r}")


def run(args: Any) -> int:
    """`neonbar client`: join a room in a window (or offscreen) until closed or captured."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _check_server(args.server)
    capture_wanted = bool(args.screenshot or args.record)
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    offscreen = bool(args.offscreen)
    if not offscreen and not has_display and os.name == "posix":
        raise UserError(
            "there is no display to open a window on; add --offscreen "
            "(with --screenshot F.png or --record F.mp4 to see what it renders)"
        )
    name = args.name or getpass.getuser() or "guest"
    from client.capture import Capture

    capture = Capture(
        base=None,  # type: ignore[arg-type]  # set below, once the ShowBase exists
        on_done=lambda: None,
        screenshot=args.screenshot,
        after_s=args.after,
        record=args.record,
        duration_s=args.duration,
    )
    from client.net import NetSession

    session = NetSession(args.server, args.room, name, token=args.token, color=color_for(name))
    base = make_showbase(offscreen, tuple(args.size), f"Neon Bar — {args.room or 'lobby'}")
    from client.watch import WatchOptions

    watch = WatchOptions(
        server_url=session.session.server_url, room=session.session.room,
        token=session.session.token,
        data_dir=Path(args.data) if args.data else None,
        playback_log=Path(args.playback_log) if args.playback_log else None,
    )  # fmt: skip
    app = NeonBarApp(base, session, name=name, look=args.look, quality=args.quality,
                     watch_options=watch,
                     reaction_source=(args.webcam, args.reaction_video))  # fmt: skip
    capture.base = base
    capture.on_done = app.stop
    app.capture = capture if capture_wanted else None
    from client.presenter import stage

    finish_stage = stage(
        app, session, tour=getattr(args, "tour", False),
        presenter=getattr(args, "presenter", False),
        save_session=getattr(args, "save_session", None),
        # the join link may carry the invite token: a recording names the server only
        header={"server": session.session.server_url, "room": session.session.room,
                "name": name},
    )  # fmt: skip
    if offscreen and not capture_wanted:  # nothing to capture: run for --duration, then leave
        base.taskMgr.doMethodLater(args.duration, lambda task: app.stop(), "neonbar-offscreen")
    # A terminate (the demo ending its evening, a kill) closes like the window does: the
    # session recording is finished and the server sees us leave.
    signal.signal(signal.SIGTERM, lambda *_: app.stop())
    session.start()
    log.info("joining %s as %s", args.server, name)
    try:
        base.run()
    except SystemExit:
        pass
    finally:
        finish_stage()
        app.destroy()
        base.destroy()
    if capture_wanted:
        for path in (args.screenshot, args.record):
            if path:
                print(f"saved {path}")
    return 0
