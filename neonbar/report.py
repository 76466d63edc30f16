"""The room report: per scene, the intended arc against the annotated (and felt) arc, the top
moments with the frame at each, who marked what, and how much people agreed.

`neonbar report --data DIR --room R --out DIR` writes `index.html` and, per scene,
`SCENE-arcs.png` and `SCENE-moment-N.png`. Everything is drawn with matplotlib's Agg backend and
frames are decoded from the scene's mp4 with PyAV; the page loads nothing from the network.

The felt arc (webcam reactions, docs/reactions.md) is drawn when `felt` is given to
`scene_report` / `write_report`: a `FeltSeries` per scene name.
"""

from __future__ import annotations

import argparse
import html
import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from neonbar.beats import (
    EMOTION_BY_NAME,
    EMOTION_NAMES,
    Agreement,
    AnnotatedArc,
    Beat,
    ChainCheck,
    agreement,
    annotated_arc,
    check_chain,
    fold,
    top_moments,
)
from neonbar.errors import UserError

FloatArray = npt.NDArray[np.float64]
THUMB_WIDTH_PX = 480
MOMENT_WINDOW_S = 1.5  # beats this close to a moment are shown on its thumbnail


def beats_near(beats: Sequence[Beat], t_s: float, window_s: float = MOMENT_WINDOW_S) -> list[Beat]:
    """The beats within `window_s` of `t_s` (a range counts where it spans)."""
    return [
        b
        for b in beats
        if b.t_in_s - window_s
        <= t_s
        <= (b.t_out_s if b.t_out_s is not None else b.t_in_s) + window_s
    ]


class ArcSeries(Protocol):
    """Valence (-1..1) and arousal (0..1) sampled over scene time: the intended arc
    (neonbar.arc.Arc) and the felt arc both have this shape."""

    @property
    def times_s(self) -> FloatArray: ...
    @property
    def valence(self) -> FloatArray: ...
    @property
    def arousal(self) -> FloatArray: ...


@dataclass(frozen=True)
class FeltSeries:
    """The felt arc of one scene as the report draws it (from the Empathy Engine's buckets).

    Attributes:
        times_s: bucket centres, seconds.
        valence, arousal: mean over watchers per bucket; NaN where nobody was watching.
        watchers: how many people's reactions each bucket holds.
        moments: (scene time s, label) of micro-expression moments worth a mark on the plot.
    """

    times_s: FloatArray
    valence: FloatArray
    arousal: FloatArray
    watchers: FloatArray
    moments: tuple[tuple[float, str], ...] = ()
    sections: tuple[Any, ...] = ()  # neonbar.reaction.SectionDeparture, felt vs intended


@dataclass
class SceneReport:
    """What the page says about one scene."""

    name: str
    title: str
    duration_s: float
    beats: list[Beat]
    annotated: AnnotatedArc
    agreement: Agreement
    moments_s: list[float]
    arcs_png: str
    thumbnails: list[tuple[float, str | None]] = field(default_factory=list)
    intended_note: str = ""
    media_note: str = ""
    felt: FeltSeries | None = None


# ---------------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_BG = "#0d0b14"
_FG = "#d8d4e8"
_INTENDED = "#ff2d95"
_ANNOTATED = "#2de2ff"
_FELT = "#ffb000"


def plot_arcs(
    path: Path,
    title: str,
    duration_s: float,
    annotated: AnnotatedArc,
    beats: Sequence[Beat],
    moments_s: Sequence[float],
    intended: ArcSeries | None = None,
    felt: FeltSeries | None = None,
) -> None:
    """Three panels over scene time: valence, arousal, and the beats (density + ticks)."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(11, 7.2), sharex=True, dpi=110)
    fig.patch.set_facecolor(_BG)
    for ax in axes:
        ax.set_facecolor(_BG)
        ax.tick_params(colors=_FG)
        for side in ax.spines.values():
            side.set_color("#3a3550")
        ax.grid(color="#26223a", linewidth=0.6)
        for t in moments_s:
            ax.axvline(t, color="#ffffff", alpha=0.25, linewidth=1.0, linestyle="--")
    v_ax, a_ax, d_ax = axes
    for ax, key, label, lo, hi in (
        (v_ax, "valence", "valence", -1.05, 1.05),
        (a_ax, "arousal", "arousal", -0.02, 1.05),
    ):
        if intended is not None:
            ax.plot(intended.times_s, getattr(intended, key), color=_INTENDED, lw=2.0,
                    label="intended (screenplay)")  # fmt: skip
        ax.plot(annotated.t_s, getattr(annotated, key), color=_ANNOTATED, lw=2.0,
                label=f"annotated ({annotated.people} people)")  # fmt: skip
        if felt is not None:
            ax.plot(felt.times_s, getattr(felt, key), color=_FELT, lw=1.6, label="felt (webcams)")
            for t, _ in felt.moments:
                ax.plot([t], [hi - 0.08], marker="v", color=_FELT, markersize=5)
        ax.set_ylim(lo, hi)
        ax.set_ylabel(label, color=_FG)
    v_ax.axhline(0.0, color="#555070", lw=0.8)
    legend = v_ax.legend(loc="upper right", fontsize=8, facecolor=_BG, edgecolor="#3a3550")
    for text in legend.get_texts():
        text.set_color(_FG)
    d_ax.fill_between(annotated.t_s, annotated.density * 60.0, color=_ANNOTATED, alpha=0.35)
    d_ax.plot(annotated.t_s, annotated.density * 60.0, color=_ANNOTATED, lw=1.2)
    top = float(np.max(annotated.density * 60.0)) if len(annotated.density) else 1.0
    authors = sorted({b.author for b in beats})
    lane = {a: i for i, a in enumerate(authors)}
    for b in beats:
        emo = EMOTION_BY_NAME[b.emotion]
        y = top * (1.08 + 0.1 * lane[b.author])
        if b.t_out_ms is not None:
            d_ax.plot([b.t_in_s, b.t_out_ms / 1000.0], [y, y], color=emo.colour, lw=3, alpha=0.8)
        d_ax.plot([b.t_in_s], [y], marker="|", markersize=10 + 8 * b.intensity, color=emo.colour,
                  markeredgewidth=2.2)  # fmt: skip
    d_ax.set_ylim(0, max(top, 1e-6) * (1.2 + 0.1 * len(authors)))
    d_ax.set_ylabel("beats / min / person", color=_FG)
    d_ax.set_xlabel("scene time (s)", color=_FG)
    d_ax.set_xlim(0, duration_s)
    handles = [
        plt.Line2D([], [], color=e.colour, marker="|", linestyle="", markersize=12,
                   markeredgewidth=2.5, label=f"{e.key} {e.name}")
        for e in EMOTION_BY_NAME.values()
    ]  # fmt: skip
    lg = d_ax.legend(handles=handles, loc="upper left", ncol=8, fontsize=7, facecolor=_BG,
                     edgecolor="#3a3550", bbox_to_anchor=(0.0, -0.28))  # fmt: skip
    for text in lg.get_texts():
        text.set_color(_FG)
    fig.suptitle(title, color=_FG, fontsize=13)
    fig.tight_layout()
    fig.savefig(path, facecolor=_BG)
    plt.close(fig)


def frame_at(media: Path, t_s: float) -> npt.NDArray[np.uint8]:
    """The RGB frame on screen at scene time `t_s` (the last frame that starts at or before it)."""
    import av

    with av.open(str(media)) as container:
        stream = container.streams.video[0]
        base = stream.time_base
        if base is None:
            raise UserError(f"{media} has a video stream without a time base")
        container.seek(max(0, int((t_s - 1.0) / float(base))), stream=stream, backward=True)
        chosen = None
        for frame in container.decode(stream):
            ft = float(frame.pts * base) if frame.pts is not None else 0.0
            if chosen is not None and ft > t_s + 1e-6:
                break
            chosen = frame
        if chosen is None:
            raise UserError(f"{media} has no frame at {t_s:.2f} s")
        image = np.asarray(chosen.to_ndarray(format="rgb24"), dtype=np.uint8)
        return image


def plot_thumbnail(
    path: Path, image: npt.NDArray[np.uint8], t_s: float, near: Sequence[Beat]
) -> None:
    """The frame with the spots people pointed at (a ring per pointed beat, emotion-coloured)."""
    plt = _pyplot()
    h, w = image.shape[:2]
    fig = plt.figure(figsize=(THUMB_WIDTH_PX / 100, THUMB_WIDTH_PX / 100 * h / w), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image)
    ax.set_axis_off()
    for b in near:
        if b.point is None:
            continue
        emo = EMOTION_BY_NAME[b.emotion]
        x, y = b.point[0] * w, b.point[1] * h
        ax.scatter([x], [y], s=420, facecolors="none", edgecolors=emo.colour, linewidths=2.5)
        ax.scatter([x], [y], s=18, color=emo.colour)
        ax.text(x + 0.06 * w, y, b.author, color=emo.colour, fontsize=8, va="center")
    ax.text(0.02 * w, 0.07 * h, f"{t_s:.1f} s", color="white", fontsize=10,
            bbox={"facecolor": "black", "alpha": 0.5, "edgecolor": "none"})  # fmt: skip
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------- assembly


def _scene_meta(name: str, beats: Sequence[Beat]) -> tuple[str, float, Any, Path | None, str, str]:
    """(title, duration_s, intended arc or None, media or None, notes about what is missing)."""
    scenes = importlib.import_module("neonbar.scenes")
    span = max(((b.t_out_ms or b.t_in_ms) / 1000.0 for b in beats), default=0.0) + 1.0
    try:
        spec = scenes.load_scene(name)
    except UserError:
        return name, span, None, None, "the scene is no longer in the library", ""
    intended = None
    intended_note = ""
    try:
        intended = importlib.import_module("neonbar.arc").intended_arc(spec)
    except UserError as exc:
        intended_note = str(exc)
    try:
        media: Path | None = scenes.media_path(spec, render=False)
        media_note = ""
    except UserError as exc:
        media, media_note = None, str(exc)
    return spec.title, float(spec.duration_s), intended, media, intended_note, media_note


def scene_report(
    out: Path,
    name: str,
    beats: Sequence[Beat],
    *,
    title: str,
    duration_s: float,
    intended: ArcSeries | None = None,
    media: Path | None = None,
    felt: FeltSeries | None = None,
    moments: int = 5,
) -> SceneReport:
    """Draw one scene's pictures into `out` and return what the page shows about it."""
    annotated = annotated_arc(beats, duration_s)
    moments_s = top_moments(beats, annotated, n=moments)
    arcs_png = f"{name}-arcs.png"
    plot_arcs(out / arcs_png, title, duration_s, annotated, beats, moments_s, intended, felt)
    report = SceneReport(
        name, title, duration_s, list(beats), annotated, agreement(beats, duration_s),
        moments_s, arcs_png, felt=felt,
    )  # fmt: skip
    for i, t in enumerate(moments_s, start=1):
        thumb: str | None = None
        if media is not None:
            near = beats_near(beats, t)
            thumb = f"{name}-moment-{i}.png"
            try:
                plot_thumbnail(out / thumb, frame_at(media, t), t, near)
            except (OSError, UserError) as exc:
                report.media_note = f"cannot read frames from {media.name}: {exc}"
                thumb = None
        report.thumbnails.append((t, thumb))
    return report


def _fmt(value: float | None, digits: int = 2) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


def render_html(
    room: str,
    scenes: Sequence[SceneReport],
    chain: ChainCheck | None = None,
    branches: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The page; every piece of user text is escaped.

    `chain` is the room's beat chain recomputed (its head is what an export must end on);
    `branches` are the room's `branch` events (the story's turns, in order).
    """
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(room)} — beats report</title><style>",
        "body{background:#0d0b14;color:#d8d4e8;font:15px/1.45 system-ui,sans-serif;"
        "margin:2em auto;max-width:1200px;padding:0 1em}",
        "h1,h2{color:#ff2d95;font-weight:600}h3{color:#2de2ff}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border-bottom:1px solid #2a2640;padding:.25em .7em;text-align:left}"
        "img{max-width:100%;border-radius:4px}.moments{display:flex;flex-wrap:wrap;gap:12px}"
        ".moments figure{margin:0;width:380px}.chip{display:inline-block;width:.8em;height:.8em;"
        "border-radius:50%;margin-right:.35em;vertical-align:middle}.note{color:#9a94b8}",
        "</style></head><body>",
        f"<h1>{e(room)}: emotional beats</h1>",
    ]
    total = sum(len(s.beats) for s in scenes)
    people = sorted({b.author for s in scenes for b in s.beats})
    parts.append(
        f"<p>{total} beats by {len(people)} people ({e(', '.join(people))}) over "
        f"{len(scenes)} scene(s).</p>"
    )
    for b in branches:
        parts.append(
            f"<p><b>The branch:</b> at {e(str(b.get('point', '?')))} of "
            f"{e(str(b.get('scene', '?')))} the story turned to <b>{e(str(b.get('label', '')))}"
            f"</b> ({e(str(b.get('choice', '?')))}): {e(str(b.get('reason', '')))}</p>"
        )
    if chain is not None:
        parts.append(
            f"<p><b>Hash chain:</b> {e(chain.sentence())} (in full: <code>{e(chain.head)}</code>). "
            "<span class='note'>An export (neonbar export --format json) carries this chain; "
            "neonbar verify recomputes it.</span></p>"
        )
    for s in scenes:
        parts.append(f"<h2>{e(s.title)} <span class='note'>({e(s.name)}, {s.duration_s:.0f} s)"
                     "</span></h2>")  # fmt: skip
        parts.append(f"<img src='{e(s.arcs_png)}' alt='arcs of {e(s.name)}'>")
        if s.intended_note:
            parts.append(f"<p class='note'>No intended arc: {e(s.intended_note)}</p>")
        if s.felt is None:
            parts.append("<p class='note'>No felt arc: nobody shared webcam reactions.</p>")
        else:
            parts.append(_felt_html(s.felt))
        parts.append("<h3>Top moments</h3><div class='moments'>")
        for t, thumb in s.thumbnails:
            near = beats_near(s.beats, t)
            caption = ", ".join(f"{b.emotion} ({b.author})" for b in near)
            img = f"<img src='{e(thumb)}' alt='frame at {t:.1f} s'>" if thumb else ""
            parts.append(f"<figure>{img}<figcaption>{t:.1f} s — {e(caption)}</figcaption></figure>")
        parts.append("</div>")
        if s.media_note:
            parts.append(f"<p class='note'>No thumbnails: {e(s.media_note)}</p>")
        a = s.agreement
        parts.append("<h3>Agreement</h3>")
        parts.append(
            f"<p>Krippendorff's alpha (nominal, {a.bin_s:g} s bins, {a.pairable_bins} bins "
            f"marked by two or more people): <b>{_fmt(a.alpha)}</b>. Timing agreement "
            f"(F1 of beats matched within ±{a.tolerance_s:g} s, mean over pairs): "
            f"<b>{_fmt(a.timing_f1)}</b>.</p>"
        )
        if a.pairs:
            parts.append("<table><tr><th>pair</th><th>timing F1</th></tr>")
            for pair, f1 in sorted(a.pairs.items()):
                parts.append(f"<tr><td>{e(pair.replace('|', ' & '))}</td><td>{f1:.2f}</td></tr>")
            parts.append("</table>")
        parts.append("<h3>Who marked what</h3><table><tr><th>person</th>")
        parts.extend(
            f"<th><span class='chip' style='background:{EMOTION_BY_NAME[n].colour}'></span>{n}</th>"
            for n in EMOTION_NAMES
        )
        parts.append("<th>notes</th></tr>")
        for who in sorted({b.author for b in s.beats}):
            mine = [b for b in s.beats if b.author == who]
            counts = [sum(1 for b in mine if b.emotion == n) for n in EMOTION_NAMES]
            notes = "; ".join(f"{b.t_in_s:.1f} s {b.note}" for b in mine if b.note)
            cells = "".join(f"<td>{c or ''}</td>" for c in counts)
            parts.append(f"<tr><td>{e(who)}</td>{cells}<td>{e(notes)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _felt_html(felt: FeltSeries) -> str:
    """Felt against intended per screenplay section, and the micro-expression moments."""
    e = html.escape
    rows = ["<h3>Felt against intended</h3>"]
    if felt.sections:
        rows.append("<table><tr><th>section</th><th>time</th><th>valence felt / intended</th>"
                    "<th>arousal felt / intended</th><th>reactions</th></tr>")  # fmt: skip
        for d in felt.sections:
            rows.append(
                f"<tr><td>{e(d.label)}</td><td>{d.start_s:.0f}–{d.end_s:.0f} s</td>"
                f"<td>{d.felt_valence:+.2f} / {d.intended_valence:+.2f} "
                f"(<b>{d.d_valence:+.2f}</b>)</td><td>{d.felt_arousal:.2f} / "
                f"{d.intended_arousal:.2f} (<b>{d.d_arousal:+.2f}</b>)</td>"
                f"<td>{d.samples}</td></tr>"
            )
        rows.append("</table>")
    else:
        rows.append("<p class='note'>No intended arc to compare the felt arc with.</p>")
    if felt.moments:
        listed = ", ".join(f"{t:.1f} s {label}" for t, label in felt.moments[:20])
        rows.append(f"<p>Micro-expressions: {e(listed)}</p>")
    return "\n".join(rows)


def write_report(
    out: Path,
    records: Sequence[Beat],
    *,
    felt: Mapping[str, FeltSeries] | None = None,
    branches: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write the report for a room's records into `out`; returns the HTML page's path."""
    if not records:
        raise UserError("there are no beats to report on")
    room = records[0].room
    out.mkdir(parents=True, exist_ok=True)
    standing = fold(records)
    order: list[str] = []
    for rec in records:
        if rec.scene not in order:
            order.append(rec.scene)
    reports = []
    for name in order:
        beats = [b for b in standing if b.scene == name]
        title, duration_s, intended, media, intended_note, media_note = _scene_meta(name, beats)
        rep = scene_report(
            out, name, beats, title=title, duration_s=duration_s, intended=intended,
            media=media, felt=(felt or {}).get(name),
        )  # fmt: skip
        rep.intended_note = intended_note
        rep.media_note = rep.media_note or media_note
        reports.append(rep)
    page = out / "index.html"
    chain = check_chain(records)
    page.write_text(render_html(room, reports, chain, branches), encoding="utf-8")
    return page


def branch_events(data_dir: Path, room: str) -> list[dict[str, Any]]:
    """The room's `branch` events (which continuation its felt arc or host chose, and why)."""
    beats_mod = importlib.import_module("server.beats")
    db = Path(data_dir) / beats_mod.DB_NAME
    if not db.is_file():
        return []
    storage = importlib.import_module("server.storage").SqliteStorage(db, threaded=False)
    try:
        events: list[dict[str, Any]] = storage.events(room, 0, 100, kinds=("branch",))
    finally:
        storage.close()
    return events


def run(args: argparse.Namespace) -> int:
    load_records = importlib.import_module("server.beats").load_records
    records: list[Beat] = load_records(Path(args.data), args.room)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; --out names a folder for the report")
    from neonbar.reaction import report_felt

    page = write_report(
        out, records, felt=report_felt(Path(args.data), args.room),
        branches=branch_events(Path(args.data), args.room),
    )  # fmt: skip
    print(f"wrote {page}")
    return 0
