"""The guided camera tour: the entrance, the bar, the crowd, the screen, the timeline, the branch.

A `Tour` is a list of `Shot`s, each a slow dolly from one camera placement to another, built
from the bar's layout (so another bar gets its own tour). Between shots the camera glides: the
position follows a Catmull-Rom curve through the shot ends and both the pace and the aim are
eased (smoothstep), so it never jumps and never stops dead. The opening shots play once, then
the "watch" shots (the screen, the crowd watching it, the timeline under it) cycle until the
end. `Tour.at(t_s)` is a pure function of time: a replay rendered twice frames the same way.

`TourCamera` stands in for the app's `CameraRig` (same `update`/`toggle`/`first_person`): it
flies the tour until someone presses any key (that key does nothing else), then hands the
camera back to the rig, which glides from where the tour left it to behind the player's
avatar. `FollowCamera` keeps the rig behind an avatar chosen by name (`neonbar replay --camera
follow NAME`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from neonbar.layout import Layout

Vec3 = tuple[float, float, float]
GLIDE_S = 2.5  # the shortest move between two shots
GLIDE_MPS = 2.7  # average speed of a longer move (smoothstep peaks at 1.5x)
TURN_DPS = 40.0  # average turn rate of a move (degrees per second)
MAX_GLIDE_S = 7.0
ANY_BUTTON_EVENT = "neonbar-tour-any-button"
TOUR_KEY_PREFIX = "neonbar-touring-"  # keys' own events while the tour flies: nobody listens
MIN_SCALE, MAX_SCALE = 0.4, 2.5  # how far a fitted opening may squeeze or stretch its shots
SCREEN_SHOTS = ("the screen", "the timeline", "the branch")  # shots that look at the film
BRANCH_LEAD_S = 2.5  # the branch shot is on screen this long before the scene changes ...
BRANCH_AFTER_S = 6.0  # ... and this long after, while the chosen continuation starts
TAG_NEAR_M = 3.0  # a name tag or a chat bubble nearer than this fills the top of the view
BODY_NEAR_M = 1.7  # at 1.1 m, a patron walking in at the door still filled half the entrance


@dataclass(frozen=True)
class Shot:
    """A camera move: from (pos, look) to (pos, look) over duration_s (metres, seconds)."""

    name: str
    duration_s: float
    start_pos: Vec3
    start_look: Vec3
    end_pos: Vec3
    end_look: Vec3
    fov_deg: float = 62.0


def smoothstep(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3.0 - 2.0 * u)


def _lerp(a: np.ndarray, b: np.ndarray, u: float) -> np.ndarray:
    return a + (b - a) * u


def _catmull_rom(
    p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, u: float
) -> np.ndarray:
    """The point at u in 0..1 between p1 and p2 on a uniform Catmull-Rom spline."""
    u2, u3 = u * u, u * u * u
    return 0.5 * (
        2 * p1
        + (-p0 + p2) * u
        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u2
        + (-p0 + 3 * p1 - 3 * p2 + p3) * u3
    )


def bar_shots(layout: Layout) -> tuple[list[Shot], list[Shot]]:
    """(opening, watch) shots for a layout: derived from its door, counter and screen."""
    hx, hy = layout.half_x, layout.half_y
    sx, sy = layout.wall_point(layout.screen.wall, layout.screen.center_m)
    screen_mid_z = layout.screen.bottom_m + layout.screen.height_m / 2
    dx, dy = layout.wall_point(layout.door.wall, layout.door.center_m, inset_m=1.0)
    inward = np.array([sx - dx, sy - dy]) / max(1e-6, math.hypot(sx - dx, sy - dy))
    counters = [b for b in layout.boxes if b.kind == "counter"] or list(layout.boxes[:1])
    if counters:
        c = counters[0]
        side = 1.0 if c.cx < 0 else -1.0  # stand on the room side of the counter
        bar_x = c.cx + side * (c.hx + 3.2)
        bar_y0, bar_y1 = c.cy - c.hy * 0.75, c.cy + c.hy * 0.55
        bar_look_x = c.cx
    else:
        bar_x, bar_y0, bar_y1, bar_look_x = -hx / 2, -hy / 2, hy / 2, -hx
    # The screen's outward normal (into the room) and its side axis.
    toward_room = np.array([-sx, -sy]) / max(1e-6, math.hypot(sx, sy))
    across = np.array([-toward_room[1], toward_room[0]])
    sw = layout.screen.width_m

    def at_screen(back_m: float, side_m: float, z: float) -> Vec3:
        p = np.array([sx, sy]) + toward_room * back_m + across * side_m
        return float(p[0]), float(p[1]), z

    door = (dx, dy)
    opening = [
        Shot(
            "entrance", 5.0,
            (door[0], door[1], 1.7),
            (door[0] + inward[0] * 10, door[1] + inward[1] * 10, 2.2),
            (door[0] + inward[0] * 3.0, door[1] + inward[1] * 3.0, 2.0),
            (door[0] + inward[0] * 13, door[1] + inward[1] * 13, 2.6),
            fov_deg=70,
        ),
        Shot(
            "the bar", 6.0,
            (bar_x, bar_y0, 2.1), (bar_look_x, bar_y0 + 4.0, 1.3),
            (bar_x - 0.6 * float(np.sign(bar_x - bar_look_x)), bar_y1, 2.0),
            (bar_look_x, bar_y1 + 3.0, 1.4),
        ),
        Shot(
            # From high past the bar's end (clear of the pillar there), across the whole floor.
            "the crowd", 6.0,
            (-hx * 0.3, hy * 0.75, 4.6), (hx * 0.12, -hy * 0.2, 0.9),
            (-hx * 0.16, hy * 0.7, 4.2), (hx * 0.2, -hy * 0.05, 1.0),
            fov_deg=66,
        ),
    ]  # fmt: skip
    # Pendant lamps hang at 2.6-3.2 m over the tables, on rods up to the ceiling: the screen
    # shots stand between the lamp rows and off the middle, so no lamp or rod crosses the picture.
    strip_mid_z = max(0.3, layout.screen.bottom_m - 0.38)  # the timeline strip under it
    low_look: Vec3 = (sx, sy, screen_mid_z - 0.6)
    mid_look: Vec3 = (sx, sy, screen_mid_z - 0.8)  # the picture and the heads below it
    watch = [
        Shot(
            # Between the lamp rows, off the middle: the rods of the lamps in line with the
            # screen (over the middle tables) project beside the picture, not across it. On
            # the crowd shot's side: from the other, the glide went through the lamp at (0, 6).
            "the screen", 8.0,
            at_screen(9.0, -3.4, 1.95), mid_look,
            at_screen(8.4, -2.4, 1.85), mid_look,
            fov_deg=78,
        ),
        Shot(
            "the timeline", 5.0,
            at_screen(5.0, -sw * 0.2, 1.45), at_screen(0.0, -sw * 0.12, strip_mid_z + 0.2),
            at_screen(4.7, sw * 0.2, 1.4), at_screen(0.0, sw * 0.12, strip_mid_z + 0.2),
            fov_deg=60,
        ),
        Shot(
            "the crowd watching", 6.0,
            at_screen(2.2, -sw * 0.62, 2.4), at_screen(7.0, 0.0, 1.3),
            at_screen(2.2, sw * 0.62, 2.4), at_screen(7.0, 0.0, 1.3),
            fov_deg=70,
        ),
        Shot(
            "the branch", 7.0,
            at_screen(9.0, 3.2, 1.5), low_look,
            at_screen(8.2, 2.2, 1.6), low_look,
            fov_deg=70,
        ),
    ]  # fmt: skip
    return opening, watch


@dataclass
class Tour:
    """A scripted camera path: `opening` once, then `watch` round and round.

    Each shot is entered by a glide from the one before, its length set by the distance
    (GLIDE_MPS on average, never under `glide_s`), so a long move is not a whip pan.
    """

    opening: list[Shot]
    watch: list[Shot]
    glide_s: float = GLIDE_S

    @classmethod
    def for_layout(cls, layout: Layout) -> Tour:
        opening, watch = bar_shots(layout)
        return cls(opening, watch)

    def _glide_into(self, shots: list[Shot], k: int) -> float:
        """Seconds of glide into shots[k] (none into the very first shot of the tour)."""
        if shots is self.opening:
            if k == 0:
                return 0.0
            before = [self.opening[k - 1]]
        elif k > 0:
            before = [shots[k - 1]]
        else:  # the first watch shot follows the opening once, then the last watch shot
            before = [self.watch[-1], *self.opening[-1:]]
        shot = shots[k]
        need = max(
            max(math.dist(b.end_pos, shot.start_pos) / GLIDE_MPS, _turn_deg(b, shot) / TURN_DPS)
            for b in before
        )
        return min(MAX_GLIDE_S, max(self.glide_s, need))

    def fitted(self, opening_s: float) -> Tour:
        """The same tour with the opening fitted to end at opening_s (the scene starts then,
        and the watch shots should meet it): its shots stretched or squeezed (at most 2.5x
        either way), and the last ones left out when even squeezed they would not fit."""
        shots = list(self.opening)
        while shots:
            trial = Tour(shots, self.watch, self.glide_s)
            glides = sum(trial._glide_into(shots, k) for k in range(len(shots)))
            held = sum(s.duration_s for s in shots)
            if glides + MIN_SCALE * held <= opening_s:
                scale = min(MAX_SCALE, (opening_s - glides) / held)
                return Tour([replace(s, duration_s=s.duration_s * scale) for s in shots],
                            self.watch, self.glide_s)  # fmt: skip
            shots.pop()
        return Tour([], self.watch, self.glide_s)

    def aligned_to_branch(self, turn_s: float) -> Tour:
        """The same tour with "the branch" held across turn_s (tour time: the moment the room
        moves on to the scene its branch point chose), from BRANCH_LEAD_S before it to
        BRANCH_AFTER_S after, so the film watches the screen change.

        The watch shots before it play once more between the opening and the branch (whole
        cycles more when the turn is far off), squeezed or stretched to fit, the least wanted
        left out when even squeezed they would not (the screen shot last); then the watch
        cycle goes on as before. Unchanged when the tour has no branch shot or the turn
        comes long before the watch shots begin.
        """
        names = [s.name for s in self.watch]
        if "the branch" not in names:
            return self
        k = names.index("the branch")
        held = replace(
            self.watch[k], duration_s=max(self.watch[k].duration_s, BRANCH_LEAD_S + BRANCH_AFTER_S)
        )
        lead = list(self.watch[:k])
        for _ in range(64):  # a whole cycle more when the turn is far off, a shot less when near
            trial = Tour([*self.opening, *lead, held], self.watch, self.glide_s)
            spans = trial._spans(trial.opening)
            before = sum(g + d for g, d in spans[: len(self.opening)])
            glides = sum(g for g, _ in spans[len(self.opening) :])
            lead_held = sum(s.duration_s for s in lead)
            room = turn_s - BRANCH_LEAD_S - before - glides  # what the lead shots may hold
            if room > MAX_SCALE * lead_held + (0.0 if lead else MAX_GLIDE_S):
                lead = [*self.watch, *lead]
            elif lead and room < MIN_SCALE * lead_held:
                lead.pop(_least_wanted(lead))
            elif not lead:
                return trial if room >= -MAX_GLIDE_S else self
            else:
                scale = room / lead_held
                lead = [replace(s, duration_s=s.duration_s * scale) for s in lead]
                return Tour([*self.opening, *lead, held], self.watch, self.glide_s)
        return self

    def _spans(self, shots: list[Shot]) -> list[tuple[float, float]]:
        return [(self._glide_into(shots, k), s.duration_s) for k, s in enumerate(shots)]

    @property
    def opening_s(self) -> float:
        return sum(g + d for g, d in self._spans(self.opening))

    @property
    def cycle_s(self) -> float:
        return sum(g + d for g, d in self._spans(self.watch))

    def shot_index(self, t_s: float) -> tuple[list[Shot], int, float, float]:
        """(the list the shot is in, its index, time since its glide began, the glide's length)."""
        t_s = max(0.0, t_s)
        if t_s < self.opening_s or not self.watch:
            shots, local = self.opening, t_s
        else:
            local = (t_s - self.opening_s) % max(1e-6, self.cycle_s)
            shots = self.watch
        spans = self._spans(shots)
        for k, (glide, held) in enumerate(spans):
            if local < glide + held or k == len(shots) - 1:
                return shots, k, local, glide
            local -= glide + held
        return shots, len(shots) - 1, local, spans[-1][0]  # pragma: no cover - returned above

    def shot_at(self, t_s: float) -> Shot:
        shots, k, _, _ = self.shot_index(t_s)
        return shots[k]

    def at(self, t_s: float) -> tuple[Vec3, Vec3, float]:
        """(camera position, point looked at, field of view in degrees) at tour time t_s."""
        shots, k, local, glide = self.shot_index(t_s)
        shot = shots[k]
        if local >= glide:
            # Inside the shot: a slow dolly, eased at both ends so glides join smoothly.
            u = min(1.0, max(0.0, (local - glide) / shot.duration_s))
            e = 0.5 * u + 0.5 * smoothstep(u)  # mostly constant speed, soft at the ends
            pos = _lerp(np.array(shot.start_pos), np.array(shot.end_pos), e)
            look = _lerp(np.array(shot.start_look), np.array(shot.end_look), e)
            return _v(pos), _v(look), shot.fov_deg
        # Gliding from the end of the previous shot to the start of this one.
        if k > 0:
            prev = shots[k - 1]
        elif shots is self.watch and t_s < self.opening_s + self.cycle_s and self.opening:
            prev = self.opening[-1]
        else:
            prev = self.watch[-1]
        u = smoothstep(local / glide)
        p0 = np.array(prev.start_pos)
        p1, p2 = np.array(prev.end_pos), np.array(shot.start_pos)
        p3 = np.array(shot.end_pos)
        pos = _catmull_rom(p0, p1, p2, p3, u)
        # The aim turns at an even rate (heading and pitch): lerping the points looked at
        # would swing the view round when they pass close to the camera.
        d0 = np.array(prev.end_look) - p1
        d1 = np.array(shot.start_look) - p2
        reach = float(np.linalg.norm(d0)) * (1 - u) + float(np.linalg.norm(d1)) * u
        look = pos + _turn(d0, d1, u) * reach
        fov = prev.fov_deg + (shot.fov_deg - prev.fov_deg) * u
        return _v(pos), _v(look), fov


DROP_FIRST = ("the branch", "the crowd watching", "the timeline")  # the screen stays longest


def _least_wanted(shots: list[Shot]) -> int:
    """The index of the shot to leave out first when a stretch of the tour is too short."""
    for name in DROP_FIRST:
        for k, shot in enumerate(shots):
            if shot.name == name:
                return k
    return 0


def _turn(a: np.ndarray, b: np.ndarray, u: float) -> np.ndarray:
    """The view direction u of the way from a to b: heading the short way round, pitch
    linearly, so a turn never passes through looking at the floor or the ceiling."""
    ha, hb = math.atan2(a[1], a[0]), math.atan2(b[1], b[0])
    pa = math.atan2(a[2], math.hypot(a[0], a[1]))
    pb = math.atan2(b[2], math.hypot(b[0], b[1]))
    dh = (hb - ha + math.pi) % (2 * math.pi) - math.pi
    h, p = ha + dh * u, pa + (pb - pa) * u
    return np.array([math.cos(h) * math.cos(p), math.sin(h) * math.cos(p), math.sin(p)])


def _turn_deg(before: Shot, after: Shot) -> float:
    """How far the view turns from the end of one shot to the start of the next (degrees)."""
    a = np.subtract(before.end_look, before.end_pos)
    b = np.subtract(after.start_look, after.start_pos)
    cos = float(np.dot(a, b) / max(1e-9, float(np.linalg.norm(a) * np.linalg.norm(b))))
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def _v(a: np.ndarray) -> Vec3:
    return float(a[0]), float(a[1]), float(a[2])


class TourCamera:
    """The app's camera while the tour plays; any key gives the camera back to the player.

    Args:
        rig: the app's `client.camera.CameraRig` (the player's camera after an interrupt).
        tour: the path to fly.
        clock: seconds, the app's clock (a replay's virtual clock).
        interruptible: listen for any key (live); a replay is never interrupted.
    """

    def __init__(
        self,
        rig: Any,
        tour: Tour,
        clock: Callable[[], float],
        interruptible: bool = True,
        on_interrupt: Callable[[], None] | None = None,
        crowd: Any = None,
        you: Callable[[], int | None] = lambda: None,
        playing: Callable[[], bool] | None = None,
    ) -> None:
        self.rig = rig
        self.playing = playing  # live: once the scene plays, the opening gives way to it
        self.crowd = crowd
        self.you = you
        self.tour = tour
        self.clock = clock
        self.t0_s = clock()
        self.touring = True
        self.on_interrupt = on_interrupt
        if interruptible:
            self._listen()

    def _listen(self) -> None:
        # While the tour flies, every key's own event is renamed (prefixed), so the key that
        # stops the tour does only that: a Space pressed to take over must not pause the
        # scene for the whole room. The general button-down event is not prefixed.
        base = self.rig.base
        for thrower in base.buttonThrowers or ():
            thrower.node().setButtonDownEvent(ANY_BUTTON_EVENT)
            thrower.node().setPrefix(TOUR_KEY_PREFIX)
        base.accept(ANY_BUTTON_EVENT, self._button)

    def _release_keys(self) -> None:
        base = self.rig.base
        for thrower in base.buttonThrowers or ():
            thrower.node().setButtonDownEvent("")
            thrower.node().setPrefix("")
        base.ignore(ANY_BUTTON_EVENT)

    def _button(self, button: str) -> None:
        if self.touring and not button.startswith(("mouse", "wheel")):
            self.interrupt()

    def interrupt(self) -> None:
        """Stop the tour; the rig glides from the tour's last placement to the avatar."""
        if not self.touring:
            return
        self.touring = False
        self.rig.base.camLens.setFov(68)
        pos = self.rig.camera.getPos()
        self.rig._pos = np.array([pos.x, pos.y, pos.z])  # start the rig's easing from here
        self._release_keys()
        if self.crowd is not None:
            clear_view(self.crowd, (1e9, 1e9, 0.0), skip=self.you())  # show everyone again
        if self.on_interrupt is not None:
            self.on_interrupt()

    def _to_the_screen(self, t_s: float) -> float:
        """The scene has started while the opening still flies (live, nobody knows when the
        host will press play): glide from where the camera is to the watch shots now."""
        pos, look, fov = self.tour.at(t_s)
        here = Shot(self.tour.shot_at(t_s).name, 1e-3, pos, look, pos, look, fov)
        self.tour = Tour([here], self.tour.watch, self.tour.glide_s)
        self.playing = None
        self.t0_s = self.clock()
        return 0.0

    @property
    def first_person(self) -> bool:
        return bool(self.rig.first_person) and not self.touring

    @property
    def camera(self) -> Any:
        return self.rig.camera

    def toggle(self) -> None:
        self.rig.toggle()

    @property
    def shot(self) -> Shot:
        return self.tour.shot_at(self.clock() - self.t0_s)

    def update(
        self, x_m: float, y_m: float, yaw_rad: float, dt_s: float, orbit_rad: float = 0.0
    ) -> None:
        if not self.touring:
            self.rig.update(x_m, y_m, yaw_rad, dt_s, orbit_rad)
            return
        t_s = self.clock() - self.t0_s
        if self.playing is not None and t_s < self.tour.opening_s and self.playing():
            t_s = self._to_the_screen(t_s)
        pos, look, fov = self.tour.at(t_s)
        cam = self.rig.camera
        cam.setPos(*pos)
        cam.lookAt(*look)
        self.rig.base.camLens.setFov(fov)
        if self.crowd is not None:
            # Facing the screen, a chat bubble over someone's head would sit on the film (the
            # chat feed still shows what they said).
            on_screen = self.tour.shot_at(self.clock() - self.t0_s).name in SCREEN_SHOTS
            clear_view(self.crowd, pos, skip=self.you(), bubbles=not on_screen)


class FollowCamera:
    """The rig behind one avatar, found each frame by `locate()` -> (x_m, y_m, yaw_rad)."""

    def __init__(self, rig: Any, locate: Callable[[], tuple[float, float, float] | None]):
        self.rig = rig
        self.locate = locate
        self.first_person = False

    @property
    def camera(self) -> Any:
        return self.rig.camera

    def toggle(self) -> None:
        self.rig.toggle()

    def update(
        self, x_m: float, y_m: float, yaw_rad: float, dt_s: float, orbit_rad: float = 0.0
    ) -> None:
        where = self.locate()
        if where is None:
            where = (x_m, y_m, yaw_rad)
        self.rig.update(*where, dt_s, orbit_rad)


def clear_view(crowd: Any, camera_pos: Vec3, skip: int | None = None, bubbles: bool = True) -> None:
    """Hide what would fill the lens: a name tag or chat bubble closer than TAG_NEAR_M, a
    figure closer than BODY_NEAR_M (a flying camera passes people by; the player's own camera
    never gets so close); every chat bubble unless `bubbles`.
    """
    cx, cy = camera_pos[0], camera_pos[1]
    for avatar_id, slot in list(crowd.slot_of.items()):
        fig = crowd.figures[slot]
        pos = crowd.position(avatar_id)
        if fig is None or pos is None or avatar_id == skip:
            continue
        d = math.hypot(pos[0] - cx, pos[1] - cy)
        bubble = getattr(fig, "bubble", None)
        for label in (fig.tag, bubble) if bubble is not None else (fig.tag,):
            if d < TAG_NEAR_M or (label is bubble and not bubbles):
                label.hide()
            elif label.isHidden():
                label.show()
        if d < BODY_NEAR_M:
            fig.root.hide()
        elif fig.root.isHidden():
            fig.root.show()
