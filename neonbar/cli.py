"""The `neonbar` command line.

Subcommand names and flags are a contract other people's scripts rely on (see docs/ and
DESIGN.md). Each handler lives in the module that owns the feature and is imported lazily, so
`neonbar invite` does not pay for Panda3D or torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from neonbar.errors import UserError

# subcommand -> "module:function"; the function takes the parsed namespace, returns exit status.
HANDLERS = {
    "server": "server.main:run",
    "invite": "neonbar.tokens:run_invite",
    "client": "client.app:run",
    "bots": "client.bots:run",
    "demo": "neonbar.demo:run",
    "lut": "neonbar.lut:run",
}


def duration_s(text: str) -> float:
    """Parse '90', '90s', '15m', '24h' or '2d' into seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    text = text.strip().lower()
    scale = units.get(text[-1:])
    number = text[:-1] if scale else text
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; use e.g. 30s, 15m, 24h"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a duration must be positive")
    return value


def size_wh(text: str) -> tuple[int, int]:
    """Parse '1280x720'."""
    try:
        w, h = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; use e.g. 1280x720") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320):
        raise argparse.ArgumentTypeError(f"size {text} is out of range")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neonbar", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("server", help="run the session server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--data", default="data", help="data directory (database, invite secret)")
    p.add_argument("--layout", default=None, help="bar layout TOML (default scenes/bar.toml)")
    p.add_argument(
        "--open",
        action="store_true",
        help="let anyone join without an invite token (as collaborator); for local demos",
    )

    p = sub.add_parser("invite", help="mint an invite token / join link for a room")
    p.add_argument("--room", required=True)
    p.add_argument("--role", required=True, choices=["host", "collaborator", "viewer"])
    p.add_argument("--name", default=None, help="fix the display name of whoever uses it")
    p.add_argument("--ttl", type=duration_s, default=duration_s("24h"))
    p.add_argument("--data", default="data")
    p.add_argument("--server", default="ws://127.0.0.1:8765", help="server URL for the link")

    p = sub.add_parser("client", help="open the desktop client and join a room")
    p.add_argument("--server", required=True, help="ws://H:P, or a join link from `invite`")
    p.add_argument("--room", default=None)
    p.add_argument("--name", default=None)
    p.add_argument("--token", default=None)
    p.add_argument("--offscreen", action="store_true", help="render without a display (EGL)")
    p.add_argument("--screenshot", default=None, metavar="F.png")
    p.add_argument("--after", type=float, default=3.0, metavar="S")
    p.add_argument("--record", default=None, metavar="F.mp4")
    p.add_argument("--duration", type=float, default=10.0, metavar="S")
    p.add_argument("--size", type=size_wh, default=(1280, 720), metavar="WxH")
    p.add_argument("--look", default=None, help="colour grade (LUT name in assets/luts)")
    p.add_argument("--quality", choices=["low", "medium", "high"], default="medium")

    p = sub.add_parser("bots", help="headless clients that wander, chat, cheer, order drinks")
    p.add_argument("--server", required=True)
    p.add_argument("--room", required=True)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--duration", type=float, default=10.0, metavar="S")
    p.add_argument("--token", default=None, help="invite token (needed unless server --open)")
    p.add_argument("--json", action="store_true", help="print one JSON object of statistics")
    p.add_argument("--chatty", type=float, default=1.0, help="social actions per bot-minute x")

    p = sub.add_parser("demo", help="run the investor demo")
    p.add_argument("--bots", type=int, default=8)
    p.add_argument("--offscreen", action="store_true")
    p.add_argument("--record", default=None, metavar="F.mp4")
    p.add_argument("--duration", type=float, default=None, metavar="S")
    p.add_argument("--port", type=int, default=0, help="server port (0 picks a free one)")

    p = sub.add_parser("lut", help="fit and apply 3D colour LUTs (.cube)")
    lut = p.add_subparsers(dest="lut_command", required=True, metavar="ACTION")
    q = lut.add_parser("fit", help="learn a LUT moving a palette toward a reference still")
    q.add_argument("--reference", required=True, metavar="IMG")
    q.add_argument("--source", default=None, metavar="IMG", help="image to grade from")
    q.add_argument("--out", required=True, metavar="F.cube")
    q.add_argument("--size", type=int, default=33, help="LUT_3D_SIZE")
    q.add_argument("--steps", type=int, default=300, help="optimisation steps")
    q.add_argument(
        "--smoothness", type=float, default=1.0, help="weight of the smoothness prior (gentler: 4)"
    )
    q = lut.add_parser("apply", help="grade an image with a LUT on the CPU")
    q.add_argument("cube", metavar="F.cube")
    q.add_argument("input", metavar="IN")
    q.add_argument("output", metavar="OUT")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = HANDLERS[args.command].split(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except UserError as exc:
        print(f"neonbar {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
