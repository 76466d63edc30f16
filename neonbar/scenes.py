"""Scene specs: what plays on the bar's big screen (format and folders: docs/scenes.md).

A scene is a TOML spec named by its file stem (`scenes/dust_storm.toml` → `dust_storm`): a
title, a Fountain screenplay, a duration and frame rate, a look (a LUT in assets/luts) and style
parameters for the generator (client/film) — or an external clip instead of the generator.

Specs are looked up in two folders, shipped first:

- `scenes/` in this checkout (the scenes that ship; `bar.toml` there is the bar's layout);
- the user scene folder: `$NEONBAR_SCENES`, else `~/.local/share/neonbar/scenes`. `neonbar
  scene add` imports clips there; the server reads it too.

Generated scenes are rendered on demand to the render cache (`$NEONBAR_CACHE`, else
`~/.cache/neonbar`), named by a hash of everything that decides their frames: the spec, its
screenplay, its LUT and `GENERATOR_VERSION`. The same spec always gives the same file.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neonbar.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_DIR = ROOT / "scenes"
LUT_DIR = ROOT / "assets" / "luts"
# Bump when client/film draws different frames for the same spec: it renames every cached render.
GENERATOR_VERSION = "film-3"
DEMO_SCENE = "neon_alley"

WEATHERS = ("dust", "rain", "clear")
CAMERAS = ("dolly", "crane", "orbit", "drift")
MAX_DURATION_S = 600.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Style:
    """The generator's knobs (see docs/scenes.md for what each one does on screen).

    Args:
        weather: "dust" (the orange storm), "rain" or "clear".
        haze_density_per_m: how thick the air is, per metre (0 .. 0.3).
        palette: the neon signs' colours, sRGB hex, first is the key colour.
        camera: "dolly" (along the street), "crane" (rising), "orbit", "drift".
        cut_rhythm: multiplies how often the film cuts inside a scene (0 = only at scene
            headings; 1 = a cut every ~4 s at rest, faster under tension).
        traffic: flying cars in the sky, 0 .. 40.
        seed: everything random in the film comes from this number.
    """

    weather: str = "rain"
    haze_density_per_m: float = 0.04
    palette: tuple[str, ...] = ("#ff2d95", "#2de2ff", "#ffb000")
    camera: str = "dolly"
    cut_rhythm: float = 1.0
    traffic: int = 12
    seed: int = 1


@dataclass(frozen=True)
class Branch:
    """An alternative continuation offered at a time of the scene (e.g. by a vote)."""

    at_s: float
    label: str
    scene: str


@dataclass(frozen=True)
class SceneSpec:
    """A loaded, validated scene spec. Paths are absolute."""

    name: str
    path: Path
    title: str
    duration_s: float
    fps: int
    look: str
    screenplay: Path | None
    style: Style = field(default_factory=Style)
    clip: Path | None = None
    size: tuple[int, int] = (1280, 720)
    branches: tuple[Branch, ...] = ()
    shipped: bool = False

    @property
    def source(self) -> str:
        """'generated' or 'clip'."""
        return "clip" if self.clip is not None else "generated"

    @property
    def look_path(self) -> Path:
        return LUT_DIR / f"{self.look}.cube"

    @property
    def frame_count(self) -> int:
        return max(1, round(self.duration_s * self.fps))


def user_dir() -> Path:
    """The user scene folder (imported clips live here)."""
    env = os.environ.get("NEONBAR_SCENES")
    return Path(env) if env else Path.home() / ".local" / "share" / "neonbar" / "scenes"


def cache_dir() -> Path:
    """Where rendered scenes are kept."""
    env = os.environ.get("NEONBAR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "neonbar"


def scene_dirs() -> list[Path]:
    return [SHIPPED_DIR, user_dir()]


def looks() -> list[str]:
    return sorted(p.stem for p in LUT_DIR.glob("*.cube"))


def _is_layout(data: dict[str, Any]) -> bool:
    return "room" in data  # scenes/bar.toml is the bar's layout, not a scene


def load_scene(name_or_path: str | Path) -> SceneSpec:
    """A scene by name (shipped first, then the user folder) or by path to its .toml.

    Raises:
        UserError: unknown scene, unreadable or invalid spec (one sentence saying what).
    """
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".toml" or os.sep in text or path.is_file():
        if not path.is_file():
            raise UserError(f"scene spec {path} does not exist")
        return _load(path.resolve())
    for folder in scene_dirs():
        candidate = folder / f"{text}.toml"
        if candidate.is_file():
            return _load(candidate.resolve())
    known = ", ".join(s.name for s in list_scenes()) or "none"
    raise UserError(f"no scene named {text!r}; known scenes: {known}")


def list_scenes() -> list[SceneSpec]:
    """Every valid scene, shipped ones first, each group by name (invalid specs are skipped)."""
    out: list[SceneSpec] = []
    seen: set[str] = set()
    for folder in scene_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            if path.stem in seen:
                continue
            try:
                spec = _load(path.resolve())
            except UserError:
                continue
            seen.add(spec.name)
            out.append(spec)
    return out


def _load(path: Path) -> SceneSpec:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read scene spec {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"scene spec {path} is not valid TOML: {exc}") from None
    if _is_layout(data):
        raise UserError(f"{path} is the bar's layout, not a scene spec")
    return spec_from_dict(data, path)


def spec_from_dict(data: dict[str, Any], path: Path) -> SceneSpec:
    """Validate a parsed spec; `path` is where it lives (relative files are beside it)."""
    where = f"scene spec {path.name}"
    name = path.stem
    if not _NAME.match(name):
        raise UserError(f"{where}: a scene's file name must be lower-case letters, digits, _ or -")

    def get(key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = data.get(key, default)
        if value is not None and not isinstance(value, kind):
            raise UserError(f"{where}: {key!r} has the wrong type")
        return value

    title = get("title", str)
    if not title or not title.strip():
        raise UserError(f"{where} needs a title")
    clip = get("clip", str)
    screenplay = get("screenplay", str)
    if clip is None and screenplay is None:
        raise UserError(f"{where} needs a screenplay (or a clip to play instead of the generator)")
    clip_path = (path.parent / clip).resolve() if clip else None
    if clip_path is not None and not clip_path.is_file():
        raise UserError(f"{where}: its clip {clip_path} does not exist")
    play_path = (path.parent / screenplay).resolve() if screenplay else None
    if play_path is not None and not play_path.is_file():
        raise UserError(f"{where}: its screenplay {play_path} does not exist")
    duration = get("duration_s", (int, float))
    if duration is None:
        raise UserError(f"{where} needs duration_s (seconds)")
    if not 0 < float(duration) <= MAX_DURATION_S:
        raise UserError(f"{where}: duration_s must be between 0 and {MAX_DURATION_S:g} seconds")
    fps = get("fps", int, 24)
    if isinstance(fps, bool) or not 1 <= fps <= 120:
        raise UserError(f"{where}: fps must be a whole number from 1 to 120")
    look = get("look", str, "neutral")
    if look not in looks():
        raise UserError(f"{where}: unknown look {look!r}; use one of {', '.join(looks())}")
    size = get("size", list, [1280, 720])
    if len(size) != 2 or not all(
        isinstance(v, int) and 16 <= v <= 4096 and v % 2 == 0 for v in size
    ):
        raise UserError(f"{where}: size must be [width, height], even numbers of pixels")
    style = _style(get("style", dict, {}), where)
    branches = tuple(_branch(b, where) for b in get("branches", list, []))
    return SceneSpec(
        name=name,
        path=path,
        title=title.strip(),
        duration_s=float(duration),
        fps=int(fps),
        look=look,
        screenplay=play_path,
        style=style,
        clip=clip_path,
        size=(int(size[0]), int(size[1])),
        branches=branches,
        shipped=path.parent == SHIPPED_DIR.resolve(),
    )


def _style(raw: dict[str, Any], where: str) -> Style:
    unknown = set(raw) - set(Style.__dataclass_fields__)
    if unknown:
        raise UserError(f"{where}: unknown style setting {sorted(unknown)[0]!r}")
    d = Style()
    weather = raw.get("weather", d.weather)
    if weather not in WEATHERS:
        raise UserError(f"{where}: weather must be one of {', '.join(WEATHERS)}")
    camera = raw.get("camera", d.camera)
    if camera not in CAMERAS:
        raise UserError(f"{where}: camera must be one of {', '.join(CAMERAS)}")
    palette = raw.get("palette", list(d.palette))
    if (
        not isinstance(palette, list)
        or not palette
        or not all(isinstance(c, str) and _HEX.match(c) for c in palette)
    ):
        raise UserError(f'{where}: palette must be a list of colours like "#ff2d95"')
    numbers = {}
    for key, low, high in (("haze_density_per_m", 0.0, 0.3), ("cut_rhythm", 0.0, 4.0)):
        value = raw.get(key, getattr(d, key))
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise UserError(f"{where}: {key} must be a number from {low:g} to {high:g}")
        numbers[key] = float(value)
    ints = {}
    for key, low, high in (("traffic", 0, 40), ("seed", 0, 2**31 - 1)):
        value = raw.get(key, getattr(d, key))
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise UserError(f"{where}: {key} must be a whole number from {low} to {high}")
        ints[key] = value
    return Style(
        weather=weather,
        camera=camera,
        palette=tuple(c.lower() for c in palette),
        haze_density_per_m=numbers["haze_density_per_m"],
        cut_rhythm=numbers["cut_rhythm"],
        traffic=ints["traffic"],
        seed=ints["seed"],
    )


def _branch(raw: Any, where: str) -> Branch:
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("at_s"), int | float)
        or not isinstance(raw.get("label"), str)
        or not isinstance(raw.get("scene"), str)
    ):
        raise UserError(f"{where}: each branch needs at_s, label and scene")
    return Branch(float(raw["at_s"]), raw["label"], raw["scene"])


# ------------------------------------------------------------------------------------ media


def spec_hash(spec: SceneSpec, size: tuple[int, int] | None = None, fps: int | None = None) -> str:
    """sha256 of everything that decides a generated scene's frames."""
    h = hashlib.sha256()
    h.update(GENERATOR_VERSION.encode())
    h.update(spec.path.read_bytes())
    for extra in (spec.screenplay, spec.look_path):
        h.update(b"\0" + (extra.read_bytes() if extra is not None else b""))
    w, hh = size or spec.size
    h.update(f"\0{w}x{hh}@{fps or spec.fps}".encode())
    return h.hexdigest()


def render_path(
    spec: SceneSpec, size: tuple[int, int] | None = None, fps: int | None = None
) -> Path:
    """Where the cached render of a generated spec lives (whether or not it exists yet)."""
    w, h = size or spec.size
    digest = spec_hash(spec, size, fps)[:16]
    return cache_dir() / "renders" / f"{spec.name}-{w}x{h}-{digest}.mp4"


def media_path(spec: SceneSpec, render: bool = True, progress: bool = False) -> Path:
    """The scene's mp4: the clip itself, or the cached render (rendered now if missing).

    Rendering imports the generator (client/film, Panda3D) only when it is needed. A process
    that must not render (the server) passes `render=False` and gets a UserError instead.
    """
    if spec.clip is not None:
        return spec.clip
    path = render_path(spec)
    if path.is_file():
        return path
    if not render:
        raise UserError(
            f"scene {spec.name!r} is not rendered yet; run: neonbar scene render {spec.name}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    film = importlib.import_module("client.film.render")
    film.render_scene(spec, path, progress=progress)
    return path


_HASHES: dict[tuple[str, int, int], str] = {}


def media_hash(path: str | Path) -> str:
    """sha256 of a media file's bytes (remembered per path, size and mtime)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def scene_name_for(title: str) -> str:
    """A file-stem name from a title: 'Blade Rain!' -> 'blade_rain'."""
    name = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:64]
    return name or "clip"


# ------------------------------------------------------------------------------------ import


def import_clip(
    clip: str | Path,
    title: str,
    screenplay: str | Path | None = None,
    name: str | None = None,
    folder: Path | None = None,
    look: str = "neutral",
) -> SceneSpec:
    """Import an external clip (what an AI video tool produces) as a scene in the user folder.

    Everything is checked before anything is written — the clip is a video with frames, the
    screenplay is readable and not empty, the name is free — and the files are written under
    temporary names and renamed last, so a refused import leaves the folder as it was.

    Returns:
        The new scene's spec (its duration and fps are the clip's).
    """
    from neonbar.arc import arc_path, intended_arc
    from neonbar.screenplay import load_screenplay
    from neonbar.video import probe

    title = title.strip()
    if not title:
        raise UserError("a scene needs a title (--title)")
    if look not in looks():
        raise UserError(f"unknown look {look!r}; use one of {', '.join(looks())}")
    info = probe(clip)
    if info.duration_s > MAX_DURATION_S:
        raise UserError(
            f"{clip} lasts {info.duration_s:.0f} s; a scene is at most {MAX_DURATION_S:g} s"
        )
    play_path = Path(screenplay) if screenplay is not None else None
    if play_path is not None:
        load_screenplay(play_path, info.duration_s)  # raises with its sentence
    name = name or scene_name_for(title)
    if not _NAME.match(name):
        raise UserError(f"scene name {name!r} must be lower-case letters, digits, _ or -")
    taken = {s.name for s in list_scenes()} | {
        p.stem for d in scene_dirs() if d.is_dir() for p in d.glob("*.toml")
    }
    if name in taken:
        raise UserError(f"a scene named {name!r} already exists; pick another with --name")
    folder = folder or user_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the scene folder {folder}: {exc.strerror}") from None

    suffix = Path(clip).suffix.lower() or ".mp4"
    final = {
        "clip": folder / f"{name}{suffix}",
        "spec": folder / f"{name}.toml",
    }
    lines = [
        f"# Imported with `neonbar scene add` from {Path(clip).name}.",
        f"title = {_toml_str(title)}",
        f"clip = {_toml_str(final['clip'].name)}",
        f"duration_s = {info.duration_s!r}",
        f"fps = {max(1, round(info.fps))}",
        f"look = {_toml_str(look)}",
        f"size = [{info.width + info.width % 2}, {info.height + info.height % 2}]",
    ]
    if play_path is not None:
        final["screenplay"] = folder / f"{name}.fountain"
        lines.insert(3, f"screenplay = {_toml_str(final['screenplay'].name)}")
    temps: dict[str, Path] = {k: v.with_name(f".{v.name}.part") for k, v in final.items()}
    try:
        temps["clip"].write_bytes(Path(clip).read_bytes())
        if play_path is not None:
            temps["screenplay"].write_bytes(play_path.read_bytes())
        temps["spec"].write_text("\n".join(lines) + "\n", encoding="utf-8")
        for key in ("clip", "screenplay", "spec"):  # the spec last: it makes the scene exist
            if key in temps:
                temps[key].replace(final[key])
    except OSError as exc:
        for path in [*temps.values(), *final.values()]:
            path.unlink(missing_ok=True)
        raise UserError(f"cannot write the scene into {folder}: {exc.strerror}") from None
    spec = _load(final["spec"].resolve())
    if spec.screenplay is not None:
        intended_arc(spec, store=True)
        assert arc_path(spec).is_file()
    return spec


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
