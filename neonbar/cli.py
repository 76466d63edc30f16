"""The `neonbar` command line.

Subcommand names and flags are a contract other people's scripts rely on (see docs/ and
DESIGN.md). Each handler lives in the module that owns the feature and is imported lazily, so
`neonbar invite` does not pay for Panda3D or torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    "replay": "client.replay:run",
    "scene": "neonbar.scenecli:run",
    "react": "client.reactions.cli:run",
    "export": "neonbar.beatexport:run_export",
    "verify": "neonbar.beatexport:run_verify",
    "report": "neonbar.report:run",
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
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=8765, help="websocket (and HTTP media) port")
    p.add_argument("--data", default="data", help="data directory (database, invite secret)")
    p.add_argument("--layout", default=None, help="bar layout TOML (default scenes/bar.toml)")
    p.add_argument(
        "--open",
        action="store_true",
        help="let anyone join without an invite token (as collaborator); for local demos",
    )
    p.add_argument(
        "--no-render",
        action="store_true",
        help="never render a generated scene (one without a render is 'missing' until "
        "`neonbar scene render` makes it)",
    )

    p = sub.add_parser("invite", help="mint an invite token / join link for a room")
    p.add_argument("--room", required=True, help="room name")
    p.add_argument(
        "--role",
        required=True,
        choices=["host", "collaborator", "viewer"],
        help="what the holder may do",
    )
    p.add_argument("--name", default=None, help="fix the display name of whoever uses it")
    p.add_argument(
        "--avatars",
        type=int,
        default=None,
        help="how many avatars the invite may hold in the room at once (default 1 with --name, "
        "else 16; a bot crowd on one invite needs one per bot)",
    )
    p.add_argument(
        "--ttl", type=duration_s, default=duration_s("24h"), help="lifetime, e.g. 30m, 24h, 2d"
    )
    p.add_argument("--data", default="data", help="the server's data directory (invite secret)")
    p.add_argument("--server", default="ws://127.0.0.1:8765", help="server URL for the link")

    p = sub.add_parser("client", help="open the desktop client and join a room")
    p.add_argument("--server", required=True, help="ws://H:P, or a join link from `invite`")
    p.add_argument("--room", default=None, help="room to join (or in the join link)")
    p.add_argument("--name", default=None, help="your display name")
    p.add_argument("--token", default=None, help="invite token (or in the join link)")
    p.add_argument("--data", default=None, help="client data directory (media cache)")
    p.add_argument("--offscreen", action="store_true", help="render without a display (EGL)")
    p.add_argument("--screenshot", default=None, metavar="F.png", help="save a screenshot")
    p.add_argument(
        "--after", type=float, default=3.0, metavar="S", help="seconds before the screenshot"
    )
    p.add_argument("--record", default=None, metavar="F.mp4", help="record an H.264 video")
    p.add_argument(
        "--duration", type=float, default=10.0, metavar="S", help="offscreen run length, seconds"
    )
    p.add_argument("--size", type=size_wh, default=(1280, 720), metavar="WxH", help="window size")
    p.add_argument("--look", default=None, help="colour grade (LUT name in assets/luts)")
    p.add_argument(
        "--quality",
        choices=["low", "medium", "high", "auto"],
        default="medium",
        help="post-processing cost (auto: low on a software renderer such as llvmpipe)",
    )
    p.add_argument(
        "--playback-log",
        default=None,
        metavar="F.jsonl",
        help="write one line per drawn frame: local time, server time, frame on the screen",
    )
    cam = p.add_mutually_exclusive_group()
    cam.add_argument(
        "--webcam", type=int, default=None, metavar="N", help="share reactions from webcam N"
    )
    cam.add_argument(
        "--reaction-video",
        default=None,
        metavar="F.mp4",
        help="share reactions read from a video file instead of a webcam",
    )
    p.add_argument(
        "--presenter", action="store_true", help="presenter mode: no HUD clutter, big timeline"
    )
    p.add_argument(
        "--tour", action="store_true", help="start with the guided camera tour (any key stops it)"
    )
    p.add_argument(
        "--save-session",
        default=None,
        metavar="F.nbsession",
        help="record the session as it happens, to re-render with `neonbar replay`",
    )

    p = sub.add_parser("bots", help="headless clients that wander, chat, cheer, order drinks")
    p.add_argument("--server", required=True, help="ws://H:P")
    p.add_argument("--room", required=True, help="room to join")
    p.add_argument("--count", type=int, default=10, help="how many bots")
    p.add_argument("--duration", type=float, default=10.0, metavar="S", help="seconds to stay")
    p.add_argument("--token", default=None, help="invite token (needed unless server --open)")
    p.add_argument("--json", action="store_true", help="print one JSON object of statistics")
    p.add_argument("--chatty", type=float, default=1.0, help="social actions per bot-minute x")
    p.add_argument(
        "--names", default=None, metavar="A,B,…", help="names for the first bots (then bot-N)"
    )
    p.add_argument(
        "--play", default=None, metavar="SCENE", help="start this scene (needs a host token)"
    )
    p.add_argument(
        "--beats", action="store_true", help="mark beats near the scene's strong moments"
    )
    p.add_argument(
        "--react",
        action="store_true",
        help="send synthetic webcam reactions that follow the scene's intended arc",
    )

    p = sub.add_parser("demo", help="run the investor demo")
    p.add_argument("--bots", type=int, default=8, help="how many patrons")
    p.add_argument("--scene", default=None, metavar="S", help="scene on the big screen")
    p.add_argument(
        "--tour",
        action="store_true",
        help="guided camera tour (on by default; any key stops it)",
    )
    p.add_argument("--offscreen", action="store_true", help="no window: write video + report")
    p.add_argument("--record", default=None, metavar="F.mp4", help="where to write the video")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="length, seconds")
    p.add_argument("--port", type=int, default=0, help="server port (0 picks a free one)")
    p.add_argument(
        "--size", type=size_wh, default=(1280, 720), metavar="WxH", help="window / video size"
    )
    p.add_argument("--out", default="out", metavar="DIR", help="folder for the video and report")

    p = sub.add_parser("replay", help="re-render a recorded session to a video")
    p.add_argument("session", metavar="SESSION", help="a session recording (.nbsession)")
    p.add_argument("--out", required=True, metavar="F.mp4", help="the video to write")
    p.add_argument(
        "--camera",
        nargs="+",
        default=["tour"],
        metavar="tour|follow NAME",
        help="camera: the guided tour, or follow one avatar by name",
    )
    p.add_argument("--size", type=size_wh, default=(1280, 720), metavar="WxH", help="video size")
    p.add_argument("--fps", type=int, default=30, help="frames per second")
    p.add_argument("--screenshot", default=None, metavar="F.png", help="also save one frame")

    p = sub.add_parser("scene", help="list, plot, render and import scenes")
    scene = p.add_subparsers(dest="scene_command", required=True, metavar="ACTION")
    q = scene.add_parser("list", help="every scene: name, title, duration, source, arc")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q = scene.add_parser("arc", help="print (and plot) a scene's intended arc")
    q.add_argument("spec", metavar="SPEC", help="scene name or path to its .toml")
    q.add_argument("--png", default=None, metavar="F", help="also plot it to this PNG")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q = scene.add_parser("render", help="render a scene spec to an H.264 mp4")
    q.add_argument("spec", metavar="SPEC", help="scene name or path to its .toml")
    q.add_argument("--out", required=True, metavar="F.mp4", help="the video to write")
    q.add_argument("--size", type=size_wh, default=None, metavar="WxH", help="frame size")
    q.add_argument("--fps", type=int, default=None, help="frames per second (default: spec's)")
    q = scene.add_parser("add", help="import an external clip as a scene")
    q.add_argument("clip", metavar="CLIP.mp4", help="the video file")
    q.add_argument("--title", required=True, help="the scene's title")
    q.add_argument("--screenplay", default=None, metavar="F.fountain", help="its screenplay")
    q.add_argument("--name", default=None, help="scene name (default: from the title)")
    q.add_argument("--look", default="neutral", help="the LUT the bar grades it with")

    p = sub.add_parser("react", help="run the webcam reaction pipeline alone")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--webcam", type=int, default=None, metavar="N", help="webcam index")
    src.add_argument("--video", default=None, metavar="F.mp4", help="read faces from a video")
    p.add_argument("--json", action="store_true", help="print one JSON object of results")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--calibrate", action="store_true", help="20-second calibration (neutral, smile, surprise)"
    )
    p.add_argument(
        "--data", default=None, help="client data directory (calibration; default ~/.local/share)"
    )

    p = sub.add_parser("export", help="export a room's beats for the edit")
    p.add_argument("--data", default="data", help="the server's data directory")
    p.add_argument("--room", required=True, help="room name")
    p.add_argument("--scene", default=None, help="only this scene's beats")
    p.add_argument(
        "--format", required=True, choices=["otio", "edl", "resolve-edl", "csv", "json"],
        help="otio: OpenTimelineIO; edl: CMX 3600; resolve-edl: DaVinci Resolve markers",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="F", help="the file to write")

    p = sub.add_parser("verify", help="check an export's hash chain")
    p.add_argument("file", metavar="F", help="a JSON or OTIO export")

    p = sub.add_parser("report", help="arcs (PNG) and a summary page (HTML) for a room")
    p.add_argument("--data", default="data", help="the server's data directory")
    p.add_argument("--room", required=True, help="room name")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into")

    p = sub.add_parser("lut", help="fit and apply 3D colour LUTs (.cube)")
    lut = p.add_subparsers(dest="lut_command", required=True, metavar="ACTION")
    q = lut.add_parser("fit", help="learn a LUT moving a palette toward a reference still")
    q.add_argument("--reference", required=True, metavar="IMG", help="the still to match")
    q.add_argument("--source", default=None, metavar="IMG", help="image to grade from")
    q.add_argument("--out", required=True, metavar="F.cube", help="the LUT to write")
    q.add_argument("--size", type=int, default=33, help="LUT_3D_SIZE")
    q.add_argument("--steps", type=int, default=300, help="optimisation steps")
    q.add_argument(
        "--smoothness", type=float, default=1.0, help="weight of the smoothness prior (gentler: 4)"
    )
    q = lut.add_parser("apply", help="grade an image with a LUT on the CPU")
    q.add_argument("cube", metavar="F.cube", help="the LUT")
    q.add_argument("input", metavar="IN", help="image to grade")
    q.add_argument("output", metavar="OUT", help="graded image to write")
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
    except BrokenPipeError:
        # The reader went away (`neonbar invite … | head -1`): not an error. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
