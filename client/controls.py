"""Keyboard and mouse: a key map filled by key-down/key-up events, read once per frame.

Movement keys are ignored while the HUD holds the keyboard (chat box or drink menu open); the
one-shot keys (cheers, wave, view, menus) are routed to callbacks the app hands in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from direct.showbase.ShowBase import ShowBase
from panda3d.core import ModifierButtons

from client.prediction import MoveInput

MOUSE_TURN_RAD_PER_UNIT = 2.2  # yaw per full window width of right-drag
HOLD_KEYS = {
    "forward": ("w", "arrow_up"),
    "back": ("s", "arrow_down"),
    "left": ("a",),
    "right": ("d",),
    "turn_left": ("q", "arrow_left"),
    "turn_right": ("e", "arrow_right"),
    "sprint": ("shift", "lshift", "rshift"),
    "drag": ("mouse3",),
}


@dataclass
class Controls:
    """Turns input events into a `MoveInput` per frame and one-shot actions."""

    base: ShowBase
    actions: dict[str, Callable[[], None]]
    captured: Callable[[], bool] = lambda: False  # True while the HUD has the keyboard
    menu_key: Callable[[str], None] | None = None  # keys for an open drink menu
    keys: dict[str, bool] = field(default_factory=dict)
    _last_mouse_x: float | None = None

    def __post_init__(self) -> None:
        # Shift is a modifier in Panda3D: without this, "shift-w" arrives instead of "w".
        if self.base.mouseWatcherNode is not None:
            self.base.mouseWatcherNode.setModifierButtons(ModifierButtons())
        for thrower in self.base.buttonThrowers or ():
            thrower.node().setModifierButtons(ModifierButtons())
        for name, buttons in HOLD_KEYS.items():
            self.keys[name] = False
            for button in buttons:
                self.base.accept(button, self._set, [name, True])
                self.base.accept(f"{button}-up", self._set, [name, False])
        one_shot = {
            "c": "cheers", "g": "wave", "v": "view", "b": "menu", "enter": "chat",
            "f2": "people", "f1": "help", "f3": "collision", "escape": "escape", "f12": "shot",
            "l": "look",
        }  # fmt: skip
        for button, action in one_shot.items():
            self.base.accept(button, self._fire, [action, button])
        for button in ("arrow_up", "arrow_down", "arrow_left", "arrow_right"):
            self.base.accept(button, self._menu, [button.removeprefix("arrow_")])
            self.base.accept(f"{button}-repeat", self._menu, [button.removeprefix("arrow_")])

    def _set(self, name: str, down: bool) -> None:
        self.keys[name] = down
        if name in ("forward", "back", "left", "right") and down:
            self._menu({"forward": "up", "back": "down", "left": "left", "right": "right"}[name])

    def _menu(self, key: str) -> None:
        if self.menu_key is not None and self.captured():
            self.menu_key(key)

    def _fire(self, action: str, button: str) -> None:
        if self.captured():
            # An open drink menu takes Enter/Escape/B; the chat box handles its own keys.
            if self.menu_key is not None and button in ("enter", "escape", "b"):
                self.menu_key(button)
            return
        callback = self.actions.get(action)
        if callback is not None:
            callback()

    def read(self) -> MoveInput:
        """This frame's movement request (all zero while typing)."""
        if self.captured():
            self._last_mouse_x = None
            return MoveInput()
        k = self.keys
        move = MoveInput(
            forward=float(k["forward"]) - float(k["back"]),
            strafe=float(k["right"]) - float(k["left"]),
            turn=float(k["turn_left"]) - float(k["turn_right"]),
            sprint=k["sprint"],
        )
        mw = self.base.mouseWatcherNode
        if k["drag"] and mw is not None and mw.hasMouse():
            x = mw.getMouseX()
            if self._last_mouse_x is not None:
                move.mouse_turn_rad = -(x - self._last_mouse_x) / 2 * MOUSE_TURN_RAD_PER_UNIT
            self._last_mouse_x = x
        else:
            self._last_mouse_x = None
        return move

    def release(self) -> None:
        self.base.ignoreAll()
