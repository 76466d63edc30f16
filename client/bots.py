"""`neonbar bots`: headless patrons on the real protocol client (client/net.py).

N bots share one asyncio loop. They wander the bar toward random free targets (moved through the
shared collision solver, the same prediction the desktop client does), now and then chat, cheer,
wave and order drinks, and stop by themselves after --duration. Tests, benchmarks and the demo
use them; `--json` prints one object of statistics:

    connected, errors, snapshots_per_s {mean, min}, latency_ms {p50, p99},
    bytes_per_s {mean}, avatars_seen {min, mean}, ...

Latency is server-to-bot: a snapshot's server time `st` against the bot's estimate of the server
clock (neonbar.clocksync) when the snapshot arrived.

All bots are driven by one 20 Hz timer (moves for every bot in one numpy batch, then one input
each) instead of a timer task per bot: at 1,000 bots that is the difference between a load
generator and a second load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from client.beats_ui import BotBeats  # also registers the beat messages the bots hear
from client.net import AsyncSession, ConnectError, ConnectionState, split_join_link
from neonbar.errors import UserError
from neonbar.layout import load_layout

log = logging.getLogger("neonbar.bots")

TICK_S = 0.05
WALK_MPS = (0.9, 1.8)
ARRIVE_M = 0.4
STUCK_S = 2.0
CONNECTS_IN_FLIGHT = 32  # handshakes at once: a burst of 1,000 would only queue in the kernel
NEON = ("#ff2bd6", "#00f0ff", "#ffb000", "#7cff4f", "#ff4f4f", "#9d6bff", "#ff8a00", "#3dfcc6")
DRINKS = ("martini", "old fashioned", "neon negroni", "synthwave sour", "blade runner", "sake")
CHAT_LINES = (
    "this haze is pure Deakins",
    "who ordered the tipsy martini?",
    "cheers to the director!",
    "that palette is so Wong Kar-wai",
    "anyone else feel that beat?",
    "the olive is glowing again",
    "meet you by the big screen",
    "one more round?",
)


@dataclass
class BotResult:
    """One bot's figures over its connected time."""

    connected: bool
    connected_s: float
    snapshots: int
    bytes_in: int
    avatars_seen: int | None
    errors: int
    malformed: int
    reconnects: int
    final_error: str | None


def run(args: argparse.Namespace) -> int:
    """Entry point of `neonbar bots`."""
    server_url, link_room, link_token = split_join_link(args.server)
    room = args.room or link_room
    token = args.token or link_token
    if not server_url.startswith(("ws://", "wss://")):
        raise UserError(
            f"--server must be a ws:// URL such as ws://127.0.0.1:8765, not {args.server!r}"
        )
    if not room:
        raise UserError("--room is required (or a join link that names the room)")
    if not 1 <= args.count <= 5000:
        raise UserError(f"--count must be between 1 and 5000, not {args.count}")
    if not args.duration > 0:
        raise UserError("--duration must be a positive number of seconds")
    logging.basicConfig(
        level=logging.WARNING if args.json else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    fleet = BotFleet(
        server_url,
        room,
        count=args.count,
        token=token,
        chatty=max(0.0, float(getattr(args, "chatty", 1.0))),
        beats=bool(getattr(args, "beats", False)),
        light=bool(getattr(args, "light", False)),
        seed=getattr(args, "seed", None),
        name_prefix=getattr(args, "name_prefix", "bot"),
        names=split_names(getattr(args, "names", None)),
        play=getattr(args, "play", None),
        react=bool(getattr(args, "react", False)),
    )
    report = runner(_run_until_signalled(fleet, args.duration))
    if args.json:
        print(json.dumps(report))
    else:
        print(human_summary(report))
    return 0


async def _run_until_signalled(fleet: BotFleet, duration_s: float) -> dict[str, Any]:
    """Ctrl-C or SIGTERM ends the run early but cleanly: every bot says bye, the summary prints."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, fleet.stop)
    return await fleet.run(duration_s)


class BotFleet:
    """N bots on one loop.

    Args:
        chatty: social actions per bot-minute (chat, cheers, wave, drink), 0 for none.
        beats: mark beats near the playing scene's strong moments (client.beats_ui.BotBeats).
        light: bots skip snapshot reconstruction (load tests); avatars_seen is then unknown.
        play: a scene the first bot starts (`--play`, needs a host token). While the room's
            timeline plays, every bot drifts toward the big screen and stands there to watch.
        react: while a scene plays, send synthetic webcam reactions that follow its intended
            arc with noise (client/reactions/audience.py).
    """

    def __init__(
        self,
        server_url: str,
        room: str,
        count: int,
        token: str | None = None,
        chatty: float = 1.0,
        beats: bool = False,
        light: bool = False,
        seed: int | None = None,
        name_prefix: str = "bot",
        names: tuple[str, ...] = (),  # the first bots' names (then name_prefix-N)
        play: str | None = None,
        react: bool = False,
    ) -> None:
        from client.reactions.audience import SyntheticAudience

        self.audience = SyntheticAudience(count, seed) if react else None
        self.server_url = server_url
        self.play = play
        self.play_sent = False
        self.watching = False  # the room's timeline is playing: gather at the screen
        self.room = room
        self.count = count
        self.chatty = chatty
        self.beats = BotBeats(count, seed) if beats else None
        self.light = light
        self.rng = np.random.default_rng(seed)
        self.random = random.Random(seed)
        self.layout = load_layout()
        self.world = _collision_world(self.layout)
        width = len(str(count))
        self.sessions = [
            AsyncSession(
                server_url,
                room,
                names[i] if i < len(names) else f"{name_prefix}-{i + 1:0{width}d}",
                token,
                self.random.choice(NEON),
                light=light,
                own_timers=False,
                record_latency=True,
            )
            for i in range(count)
        ]
        n = count
        self.pos_m = np.zeros((n, 2))
        self.yaw_rad = np.zeros(n)
        self.target_m = np.zeros((n, 2))
        self.speed_mps = self.rng.uniform(*WALK_MPS, n)
        self.progress_s = np.zeros(n)  # time since last real progress toward the target
        self._welcomes_seen = [0] * n
        for session in self.sessions:
            session.on_message = self._on_message
        self._tasks: list[asyncio.Task[None]] = []
        self._deadline_s = math.inf

    async def run(self, duration_s: float) -> dict[str, Any]:
        started_s = time.monotonic()
        gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
        first_failure: list[str] = []

        async def one(session: AsyncSession) -> None:
            async with gate:
                task = asyncio.ensure_future(session.run())
                waiter = asyncio.ensure_future(session.wait_welcome())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            try:
                await task
            except ConnectError as exc:
                first_failure.append(str(exc))

        self._tasks = [asyncio.create_task(one(s)) for s in self.sessions]
        self._deadline_s = started_s + duration_s
        driver = asyncio.create_task(self._drive())
        try:
            await driver
        finally:
            await asyncio.gather(*(s.close() for s in self.sessions), return_exceptions=True)
            await asyncio.gather(*self._tasks, return_exceptions=True)
        ended_s = time.monotonic()
        connected = sum(s.stats.connected_at_local_s is not None for s in self.sessions)
        if connected == 0:
            # Nobody got in: say why once (refused, bad URL, invite needed, room full...).
            reasons = first_failure + [s.last_error for s in self.sessions if s.last_error]
            if reasons:
                raise UserError(reasons[0])
        return self.report(ended_s)

    # --------------------------------------------------------------------------- driving

    def stop(self) -> None:
        """End the run at the next tick (e.g. from a signal handler)."""
        self._deadline_s = 0.0

    async def _drive(self) -> None:
        tick = 0
        next_s = time.monotonic()
        p_social = self.chatty / 60.0 * TICK_S
        while True:
            now_s = time.monotonic()
            if now_s >= self._deadline_s:
                return
            if all(s.state is ConnectionState.CLOSED for s in self.sessions) and tick > 20:
                return  # nobody left to drive (every connection refused or ended for good)
            live = [i for i, s in enumerate(self.sessions) if s.state is ConnectionState.CONNECTED]
            if live:
                if self.play and not self.play_sent:
                    self._start_scene(self.sessions[live[0]])
                self._adopt_welcomes(live)
                self._move(np.array(live), TICK_S)
                for i in live:
                    session = self.sessions[i]
                    session.local_state = (
                        float(self.pos_m[i, 0]),
                        float(self.pos_m[i, 1]),
                        float(self.yaw_rad[i]),
                    )
                    await session.send_input()
                    # Pings spread over the second: one twentieth of the bots per tick.
                    if (i + tick) % 20 == 0:
                        await session.send_ping()
                    if p_social and self.random.random() < p_social:
                        session.queue_message(self._social_action())
                    if self.beats is not None:
                        for beat in self.beats.due(i, session.server_time()):
                            session.queue_message(beat)
                    if self.audience is not None and (i + tick) % 2 == 0:  # 10 Hz each
                        for msg in self.audience.messages(i, session.server_time(), 2 * TICK_S):
                            session.queue_message(msg)
            tick += 1
            next_s += TICK_S
            delay_s = next_s - time.monotonic()
            if delay_s < -0.5:  # overloaded: do not try to catch up in a burst
                next_s = time.monotonic()
            await asyncio.sleep(max(0.0, delay_s))

    def _start_scene(self, session: AsyncSession) -> None:
        """`--play`: choose the scene and play it (the server starts it once it is ready)."""
        self.play_sent = True
        if session.role != "host":
            log.warning("--play %s needs a host token; %s is a %s", self.play, session.name,
                        session.role)  # fmt: skip
        session.queue_message({"t": "playback", "op": "scene", "scene": self.play})
        session.queue_message({"t": "playback", "op": "play"})

    def _on_message(self, msg: dict[str, Any]) -> None:
        """Every bot hears the timeline: while it plays, they all go and watch."""
        if self.beats is not None:
            self.beats.on_message(msg)
        if self.audience is not None:
            self.audience.on_message(msg)
        timeline = msg.get("timeline") if msg.get("t") == "welcome" else msg
        if msg.get("t") == "welcome" or msg.get("kind") == "timeline":
            if not isinstance(timeline, dict):
                return
            watching = bool(timeline.get("playing")) and timeline.get("status") == "ready"
            started = watching and not self.watching
            self.watching = watching
            if started:  # everyone heads for the screen (targets drawn there from now on)
                self.target_m[:] = self._random_targets(self.count)
                self.progress_s[:] = 0.0
        elif msg.get("t") == "error" and msg.get("ref") == "playback":
            log.warning("playback refused: %s", msg.get("message"))

    def _adopt_welcomes(self, live: list[int]) -> None:
        """A (re)joined bot starts from where the server put it."""
        for i in live:
            session = self.sessions[i]
            if session.stats.welcomes != self._welcomes_seen[i]:
                self._welcomes_seen[i] = session.stats.welcomes
                if session.local_state is not None:
                    self.pos_m[i] = session.local_state[:2]
                    self.yaw_rad[i] = session.local_state[2]
                self.target_m[i] = self._random_targets(1)[0]
                continue
            self._reconcile(i, session)

    def _reconcile(self, i: int, session: AsyncSession) -> None:
        """Take the server's word when it disagrees with our prediction (a refused move)."""
        correction = session.correction()
        if correction is None:
            return
        x_m, y_m, _, seq = correction
        sent = session.sent_states.get(seq)
        if sent is None:
            return
        err = np.array([x_m - sent[0], y_m - sent[1]])
        if float(np.hypot(*err)) > 0.25:
            self.pos_m[i] += err
            self.target_m[i] = self._random_targets(1)[0]

    def _move(self, rows: np.ndarray, dt_s: float) -> None:
        to_target = self.target_m[rows] - self.pos_m[rows]
        dist_m = np.hypot(to_target[:, 0], to_target[:, 1])
        step_m = np.minimum(dist_m, self.speed_mps[rows] * dt_s)
        with np.errstate(invalid="ignore", divide="ignore"):
            direction = np.where(dist_m[:, None] > 1e-9, to_target / dist_m[:, None], 0.0)
        delta = direction * step_m[:, None]
        before = self.pos_m[rows].copy()
        if self.world is not None:
            after = self.world.solve_moves(before, delta)
        else:
            after = before + delta
            hx, hy = self.layout.half_x - 0.4, self.layout.half_y - 0.4
            after[:, 0] = np.clip(after[:, 0], -hx, hx)
            after[:, 1] = np.clip(after[:, 1], -hy, hy)
        moved_m = np.hypot(*(after - before).T)
        self.pos_m[rows] = after
        walking = moved_m > 1e-4
        # yaw 0 faces +y, counter-clockwise (neonbar.protocol.yaw_to_units)
        heading = np.arctan2(-delta[:, 0], delta[:, 1]) % (2 * math.pi)
        self.yaw_rad[rows] = np.where(walking, heading, self.yaw_rad[rows])
        slow = moved_m < 0.25 * step_m
        self.progress_s[rows] = np.where(slow, self.progress_s[rows] + dt_s, 0.0)
        arrived = dist_m < ARRIVE_M
        if self.watching:  # at the screen: stay and watch
            arrived[:] = False
        retarget = rows[arrived | (self.progress_s[rows] > STUCK_S)]
        if len(retarget):
            self.target_m[retarget] = self._random_targets(len(retarget))
            self.progress_s[retarget] = 0.0

    def _random_targets(self, n: int) -> np.ndarray:
        hx, hy = self.layout.half_x - 1.0, self.layout.half_y - 1.0
        pts = np.column_stack([self.rng.uniform(-hx, hx, n * 4), self.rng.uniform(-hy, hy, n * 4)])
        if self.watching:  # a spot in front of the big screen, 2.5-8 m from it
            s = self.layout.screen
            along = self.rng.uniform(s.center_m - s.width_m / 2, s.center_m + s.width_m / 2, n * 4)
            inset = self.rng.uniform(2.5, 8.0, n * 4)
            pairs = zip(along, inset, strict=True)
            pts = np.array([self.layout.wall_point(s.wall, a, d) for a, d in pairs])
        if self.world is not None:
            free = self.world.is_free(pts)
            pts = np.concatenate([pts[free], pts[~free]])  # free ones first
        return pts[:n]

    def _social_action(self) -> dict[str, Any]:
        r = self.random.random()
        if r < 0.35:
            return {"t": "chat", "text": self.random.choice(CHAT_LINES)}
        if r < 0.6:
            return {"t": "emote", "emote": "cheers"}
        if r < 0.75:
            return {"t": "emote", "emote": self.random.choice(("wave", "clap", "dance"))}
        garnish = self.random.choice(("neural_olive", "neural_olive", "olive", "lime", "cherry"))
        return {
            "t": "drink",
            # The seed's glowing neural-implant olive comes on a nanofiber toothpick.
            "drink": "tipsy martini" if garnish == "neural_olive" else self.random.choice(DRINKS),
            "color": self.random.choice(NEON),
            "glow": round(self.random.uniform(0.2, 1.0), 2),
            "garnish": garnish,
        }

    # --------------------------------------------------------------------------- report

    def results(self, ended_s: float) -> list[BotResult]:
        out = []
        for s in self.sessions:
            start = s.stats.connected_at_local_s
            seen: int | None = None
            if not self.light:
                seen_ids = set(s.view.seen_ids().tolist())
                if s.you is not None:
                    seen_ids.add(s.you)  # a bot sees itself (its own id may be left out)
                seen = len(seen_ids)
            out.append(
                BotResult(
                    connected=start is not None,
                    connected_s=max(1e-3, ended_s - start) if start is not None else 0.0,
                    snapshots=s.stats.snapshots,
                    bytes_in=s.stats.bytes_in,
                    avatars_seen=seen,
                    errors=s.stats.errors,
                    malformed=s.stats.malformed,
                    reconnects=s.stats.reconnects,
                    final_error=s.last_error if s.state is ConnectionState.CLOSED else None,
                )
            )
        return out

    def report(self, ended_s: float) -> dict[str, Any]:
        results = self.results(ended_s)
        live = [r for r in results if r.connected]
        snaps = [r.snapshots / r.connected_s for r in live]
        rates = [r.bytes_in / r.connected_s for r in live]
        seen = [r.avatars_seen for r in live if r.avatars_seen is not None]
        latency_s = np.concatenate(
            [np.asarray(s.stats.latency_s, float) for s in self.sessions] or [np.empty(0)]
        )
        failures = [r for r in results if not r.connected]
        errors = sum(r.errors + r.malformed for r in results) + len(failures)
        return {
            "server": self.server_url,
            "room": self.room,
            "bots": self.count,
            "connected": len(live),
            "errors": errors,
            "server_errors": sum(r.errors for r in results),
            "malformed_frames": sum(r.malformed for r in results),
            "failed_to_connect": len(failures),
            "reconnects": sum(r.reconnects for r in results),
            "events_received": sum(s.stats.events for s in self.sessions),
            "beats_sent": self.beats.sent if self.beats is not None else 0,
            "closed_by_server": sorted({r.final_error for r in results if r.final_error}),
            "snapshots_per_s": _stats(snaps, ("mean", "min")),
            "latency_ms": {
                "p50": _round(np.percentile(latency_s, 50) * 1000) if len(latency_s) else None,
                "p99": _round(np.percentile(latency_s, 99) * 1000) if len(latency_s) else None,
                "samples": len(latency_s),
            },
            "bytes_per_s": _stats(rates, ("mean", "min", "max")),
            "avatars_seen": _stats(seen, ("min", "mean")) if seen else None,
            "light": self.light,
            "reactions_sent": self.audience.sent if self.audience is not None else 0,
            "micro_sent": self.audience.micro_sent if self.audience is not None else 0,
        }


def split_names(text: str | None) -> tuple[str, ...]:
    """`--names Mira,Chow,Su` -> ("Mira", "Chow", "Su")."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def _round(value: float) -> float:
    return round(float(value), 2)


def _stats(values: list[float] | list[int], which: tuple[str, ...]) -> dict[str, float | None]:
    if not values:
        return dict.fromkeys(which)
    arr = np.asarray(values, float)
    funcs: dict[str, Callable[[np.ndarray], Any]] = {
        "mean": np.mean,
        "min": np.min,
        "max": np.max,
        "p50": np.median,
    }
    return {k: _round(funcs[k](arr)) for k in which}


def human_summary(report: dict[str, Any]) -> str:
    snaps = report["snapshots_per_s"]
    lat = report["latency_ms"]
    seen = report["avatars_seen"]
    lines = [
        f"{report['connected']}/{report['bots']} bots connected to {report['server']} "
        f"room {report['room']}; {report['errors']} errors",
        f"snapshots/s per bot: mean {snaps['mean']}, min {snaps['min']}",
        f"server-to-bot latency: p50 {lat['p50']} ms, p99 {lat['p99']} ms",
        f"downstream per bot: {report['bytes_per_s']['mean']} B/s",
    ]
    if seen:
        lines.append(f"avatars seen per bot: min {seen['min']}, mean {seen['mean']}")
    if report["closed_by_server"]:
        lines.append("closed by the server: " + "; ".join(report["closed_by_server"]))
    return "\n".join(lines)


def _collision_world(layout: Any) -> Any:
    """The shared solver when it exists; bots fall back to clamping to the room's bounds."""
    try:
        from neonbar.collision import CollisionWorld
    except ImportError:
        return None
    with contextlib.suppress(Exception):
        return CollisionWorld(layout)
    return None
