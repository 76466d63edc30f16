"""The heads-up display: connection state, chat, keys help, participants, the drink menu.

Everything is 2D text on `base.aspect2d`. While the chat box or the drink menu has the keyboard,
`Hud.captures_keys` is True and the movement controls stand still.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from direct.gui.DirectGui import DirectEntry
from direct.gui.OnscreenText import OnscreenText
from direct.showbase.ShowBase import ShowBase
from panda3d.core import NodePath, TextNode

from client import fonts

try:  # the drink vocabulary is the protocol's; keep a copy for an older neonbar
    from neonbar.protocol import GARNISHES
except ImportError:  # pragma: no cover
    GARNISHES = ("none", "olive", "neural_olive", "lime", "cherry", "umbrella", "orange_peel")

HELP = """\
W A S D / arrows   walk          Shift   sprint
Q E / right-drag   turn          V       first / third person
Enter              chat          C       cheers (clink when close)
G                  wave          B       drink menu (at the bar)
F2                 people        F3      collision shapes
L                  colour grade  F12     screenshot
1-8 (hold: louder) mark a beat   Shift+1-8 start / end a range
Tab                note on beat  Ctrl+1-8 change its emotion
hold P             point at the screen      Del  delete a beat
R                  pause / resume webcam reactions (when shared)
F1                 this help     Esc     close menus"""

# (name, colour, glow, garnish): the house drinks; every field can be changed in the menu.
DRINKS = (
    ("Tipsy Martini", "#d8f0c0", 0.2, "olive"),
    ("Neural Martini", "#39ff88", 0.9, "neural_olive"),
    ("Orange Haze", "#ff8a1f", 0.6, "orange_peel"),
    ("Mood for Love", "#ff2d55", 0.4, "cherry"),
    ("Tears in Rain", "#2de2ff", 0.7, "lime"),
    ("Replicant Fizz", "#b13dff", 1.0, "umbrella"),
)
PALETTE = ("#39ff88", "#2de2ff", "#ff2d55", "#ff8a1f", "#b13dff", "#ff3fb4", "#d8f0c0", "#ffe14d")

Send = Callable[[dict[str, Any]], None]


def _font(text: str = "") -> Any:
    path = fonts.cjk_font_path() if fonts.needs_cjk(text) else fonts.latin_font_path()
    return fonts.load_font(_loader[0], path)


_loader: list[Any] = [None]


@dataclass
class DrinkChoice:
    """What the drink menu is composing."""

    preset: int = 1
    color: str = DRINKS[1][1]
    glow: float = DRINKS[1][2]
    garnish: str = DRINKS[1][3]

    def apply_preset(self, k: int) -> None:
        self.preset = k % len(DRINKS)
        _, self.color, self.glow, self.garnish = DRINKS[self.preset]

    def message(self) -> dict[str, Any]:
        return {
            "t": "drink",
            "drink": DRINKS[self.preset][0],
            "color": self.color,
            "glow": round(self.glow, 2),
            "garnish": self.garnish,
        }


@dataclass
class Hud:
    """Text overlays and the two modal panels (chat entry, drink menu)."""

    base: ShowBase
    send: Send
    root: NodePath = field(init=False)
    chat_lines: deque[tuple[str, tuple[float, float, float, float]]] = field(
        default_factory=lambda: deque(maxlen=7)
    )
    drink: DrinkChoice = field(default_factory=DrinkChoice)
    typing: bool = False
    menu_open: bool = False
    _menu_row: int = 0
    _toast_until: float = 0.0
    _chat_closed_at: float = 0.0
    clock: Callable[[], float] = time.monotonic  # a replay runs toasts on its virtual clock

    def __post_init__(self) -> None:
        _loader[0] = self.base.loader
        self.root = self.base.aspect2d.attachNewNode("hud")
        a2d = self.base.a2dTopLeft
        font = _font()
        self.status = OnscreenText(
            text="connecting…", parent=a2d, pos=(0.06, -0.09), scale=0.05, align=TextNode.ALeft,
            fg=(1, 0.75, 0.3, 1), shadow=(0, 0, 0, 0.8), font=font, mayChange=True,
        )  # fmt: skip
        self.hint = OnscreenText(
            text="F1 keys", parent=self.base.a2dTopRight, pos=(-0.06, -0.09), scale=0.04,
            align=TextNode.ARight, fg=(0.8, 0.8, 0.9, 0.7), font=font, mayChange=True,
        )  # fmt: skip
        self.chat_text = OnscreenText(
            text="", parent=self.base.a2dBottomLeft, pos=(0.06, 0.42), scale=0.042,
            align=TextNode.ALeft, fg=(0.95, 0.92, 1, 1), shadow=(0, 0, 0, 0.9),
            font=_font("字"), mayChange=True,
        )  # fmt: skip
        self.toast = OnscreenText(
            text="", parent=self.base.aspect2d, pos=(0, 0.8), scale=0.055, fg=(1, 0.8, 0.4, 1),
            shadow=(0, 0, 0, 0.9), font=font, mayChange=True,
        )  # fmt: skip
        self.help = self._panel(HELP, self.base.a2dTopLeft, (0.06, -0.2), 0.042)
        self.help.hide()
        self.people = self._panel("", self.base.a2dTopRight, (-1.15, -0.2), 0.042)
        self.people.hide()
        self.menu = self._panel("", self.base.aspect2d, (-0.6, 0.35), 0.05)
        self.menu.hide()
        self.entry = DirectEntry(
            parent=self.base.a2dBottomLeft, pos=(0.06, 0, 0.08), scale=0.045, width=34,
            numLines=1, focus=0, command=self._submit, text_fg=(1, 1, 1, 1),
            frameColor=(0.05, 0.02, 0.1, 0.75), entryFont=_font("字"), initialText="",
            focusOutCommand=self._blur, suppressKeys=True,
        )  # fmt: skip
        self.entry.hide()

    def _panel(
        self, text: str, parent: NodePath, pos: tuple[float, float], scale: float
    ) -> OnscreenText:
        # Monospaced: the panels are tables (keys and what they do, names and pings).
        font = fonts.load_font(self.base.loader, fonts.mono_font_path()) or _font()
        return OnscreenText(
            text=text, parent=parent, pos=pos, scale=scale, align=TextNode.ALeft,
            fg=(0.95, 0.9, 1, 1), bg=(0.03, 0.01, 0.06, 0.8), font=font, mayChange=True,
        )  # fmt: skip

    @property
    def captures_keys(self) -> bool:
        return self.typing or self.menu_open

    # -------------------------------------------------------------------------------- state

    def set_status(self, state: str, ping_ms: float | None, error: str | None) -> None:
        """connecting / connected · ping / reconnecting (why) / closed (why)."""
        colours = {
            "connected": (0.35, 1, 0.6, 1),
            "connecting": (1, 0.75, 0.3, 1),
            "reconnecting": (1, 0.5, 0.2, 1),
            "closed": (1, 0.3, 0.35, 1),
            "offline": (0.7, 0.7, 0.8, 1),
        }
        text = f"● {state}"
        if state == "connected" and ping_ms is not None:
            text += f" · {ping_ms:.0f} ms"
        if state in ("reconnecting", "closed", "connecting") and error:
            text += f" — {error}"
        if self.status.text != text:
            self.status.setText(text)
            self.status.setFg(colours.get(state, (1, 1, 1, 1)))

    def add_chat(self, who: str, text: str, color: tuple[float, float, float] = (1, 1, 1)) -> None:
        self.chat_lines.append((f"{who}: {text}" if who else text, (*color, 1)))
        self.chat_text.setText("\n".join(line for line, _ in self.chat_lines))

    def show_toast(self, text: str, seconds: float = 3.0) -> None:
        self.toast.setText(text)
        self._toast_until = self.clock() + seconds

    def update(self) -> None:
        if self._toast_until and self.clock() > self._toast_until:
            self.toast.setText("")
            self._toast_until = 0.0

    # --------------------------------------------------------------------------------- chat

    def open_chat(self) -> None:
        # The Enter that sent a line must not reopen the box it just closed.
        if self.menu_open or self.clock() - self._chat_closed_at < 0.25:
            return
        self.typing = True
        self.entry.show()
        self.entry.enterText("")
        self.entry["focus"] = 1

    def _submit(self, text: str) -> None:
        text = text.strip()
        if text:
            self.send({"t": "chat", "text": text[:500]})
        self.close_chat()

    def _blur(self) -> None:
        self.close_chat()

    def close_chat(self) -> None:
        if self.typing:
            self._chat_closed_at = self.clock()
        self.typing = False
        self.entry["focus"] = 0
        self.entry.enterText("")
        self.entry.hide()

    # --------------------------------------------------------------------------- panels

    def toggle_help(self) -> None:
        self.help.hide() if not self.help.isHidden() else self.help.show()

    def toggle_people(self, rows: list[str] | None = None) -> None:
        if self.people.isHidden():
            self.people.show()
            if rows is not None:
                self.set_people(rows)
        else:
            self.people.hide()

    def set_people(self, rows: list[str]) -> None:
        self.people.setText("PEOPLE HERE\n\n" + "\n".join(rows))

    # ----------------------------------------------------------------------- drink menu

    def open_menu(self) -> None:
        if self.typing:
            return
        self.menu_open = True
        self._render_menu()
        self.menu.show()

    def close_menu(self) -> None:
        self.menu_open = False
        self.menu.hide()

    def menu_key(self, key: str) -> None:
        """Keyboard for the open drink menu: up/down pick a row, left/right change it."""
        if not self.menu_open:
            return
        d = self.drink
        if key in ("up", "w"):
            self._menu_row = (self._menu_row - 1) % 4
        elif key in ("down", "s"):
            self._menu_row = (self._menu_row + 1) % 4
        elif key in ("left", "right", "a", "d"):
            step = 1 if key in ("right", "d") else -1
            if self._menu_row == 0:
                d.apply_preset(d.preset + step)
            elif self._menu_row == 1:
                i = PALETTE.index(d.color) if d.color in PALETTE else 0
                d.color = PALETTE[(i + step) % len(PALETTE)]
            elif self._menu_row == 2:
                d.glow = min(1.0, max(0.0, round(d.glow + 0.1 * step, 2)))
            else:
                i = GARNISHES.index(d.garnish) if d.garnish in GARNISHES else 0
                d.garnish = GARNISHES[(i + step) % len(GARNISHES)]
        elif key == "enter":
            self.send(d.message())
            self.close_menu()
            return
        elif key in ("escape", "b"):
            self.close_menu()
            return
        self._render_menu()

    def _render_menu(self) -> None:
        d = self.drink
        glow_bar = "█" * round(d.glow * 10) + "·" * (10 - round(d.glow * 10))
        rows = (
            f"drink    {DRINKS[d.preset][0]}",
            f"colour   {d.color}",
            f"glow     {glow_bar}",
            f"garnish  {d.garnish.replace('_', ' ')}",
        )
        lines = [("▶ " if i == self._menu_row else "   ") + row for i, row in enumerate(rows)]
        self.menu.setText(
            "THE BAR — what'll it be?\n\n"
            + "\n".join(lines)
            + "\n\n↑↓ choose  ←→ change  Enter order  Esc close"
        )
        self.menu.setFg((*_hex(d.color), 1))

    def destroy(self) -> None:
        for item in (self.status, self.hint, self.chat_text, self.toast):
            item.destroy()
        for panel in (self.help, self.people, self.menu):
            panel.destroy()
        self.entry.destroy()
        self.root.removeNode()


def _hex(color: str) -> tuple[float, float, float]:
    try:
        return tuple(int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]
    except (ValueError, IndexError):
        return (1.0, 1.0, 1.0)


__all__ = ["DRINKS", "HELP", "DrinkChoice", "Hud"]
