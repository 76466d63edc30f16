"""Intended-arc benchmark: a feature-length screenplay (~120 pages) through neonbar.arc.

The screenplay is built from the three shipped scripts, repeated with numbered scene headings
until it has 120 pages (55 lines a page, the usual Courier page), so its elements are the mix a
real script has. Timed, medians of several runs:

- fountain-py's parse alone (`FountainParser().parse`), the anchor: the part we do not own;
- timing (`parse_screenplay`: parse + the timing rule);
- the whole arc (`arc_of_text`: parse, time, score with VADER + cues, lay out, smooth).

Run: .venv/bin/python bench/arc.py [--runs 5] [--pages 120]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fountain import FountainParser  # noqa: E402

from neonbar.arc import arc_of_text  # noqa: E402
from neonbar.screenplay import parse_screenplay  # noqa: E402

LINES_PER_PAGE = 55


def feature_script(pages: int) -> str:
    bodies = []
    for path in sorted((ROOT / "scenes").glob("*.fountain")):
        text = path.read_text(encoding="utf-8")
        # Drop the title page: everything before the first blank line.
        bodies.append(text.split("\n\n", 1)[1])
    out = ["Title: Feature Benchmark", "Credit: assembled from the shipped scenes", ""]
    k = 0
    while len(out) < pages * LINES_PER_PAGE:
        body = bodies[k % len(bodies)]
        body = body.replace(" - NIGHT", f" #{k}# - NIGHT").replace(" - DUSK", f" #{k}# - DUSK")
        out += [*body.splitlines(), ""]
        k += 1
    return "\n".join(out)


def median_s(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pages", type=int, default=120)
    args = ap.parse_args()
    text = feature_script(args.pages)
    play = parse_screenplay(text)
    arc = arc_of_text(text)  # warm: VADER's lexicon loads once per process
    print(
        f"screenplay: {len(text.splitlines())} lines (~{args.pages} pages), "
        f"{len(play.elements)} timed elements, {len(play.scene_starts_s)} scenes, "
        f"natural length {play.duration_s / 60:.0f} min; arc samples {len(arc.times_s)}"
    )
    parse = median_s(lambda: FountainParser().parse(text), args.runs)
    timed = median_s(lambda: parse_screenplay(text), args.runs)
    full = median_s(lambda: arc_of_text(text), args.runs)
    print(f"{'step':<40} {'median s':>9} {'x parse':>8}")
    for name, value in (
        ("fountain-py parse (anchor)", parse),
        ("parse + timing (parse_screenplay)", timed),
        ("whole arc (arc_of_text)", full),
    ):
        print(f"{name:<40} {value:9.3f} {value / parse:8.2f}")
    print(f"scoring + smoothing alone: {full - timed:.3f} s")


if __name__ == "__main__":
    main()
