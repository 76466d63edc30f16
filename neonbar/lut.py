"""3D colour LUTs: read and write `.cube` files, grade images on the CPU, learn a look.

A `.cube` file (Adobe/Resolve) lists `LUT_3D_SIZE`³ output triplets with red changing fastest,
then green, then blue. `Lut3D.table` keeps them indexed `[r, g, b]` (the colour-science order)
so `table[i, j, k]` is the output for input `(i, j, k) / (size - 1)` mapped into the domain.

`apply` is trilinear, like colour-science's `LUT3D.apply`, and clamps inputs to the domain.
Per cell it evaluates the trilinear polynomial from precomputed coefficients (one gather of
24 floats per pixel instead of eight of three). With numba installed it runs as a parallel
compiled loop (a 1080p frame in tens of milliseconds); without it a chunked numpy version gives
the same numbers, only slower.

`fit` learns a smooth LUT that moves one image's palette toward a reference still's: it
matches colour distributions (sliced Wasserstein in Oklab) under a lattice smoothness prior.
Torch is imported only there.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from neonbar.errors import UserError

F32 = NDArray[np.float32]
AnyArray = NDArray[Any]  # an image or palette of any dtype (converted on the way in)

MIN_SIZE = 2
MAX_SIZE = 129  # 129³ is the largest size Resolve writes; bigger is surely a typo
CHUNK_PIXELS = 1 << 16  # numpy fallback: keep temporaries in cache


class LutError(UserError):
    """A `.cube` file that cannot be read, naming the file and the line."""


@dataclass
class Lut3D:
    """A 3D LUT: `table[r, g, b] -> rgb`, float32, shape (size, size, size, 3)."""

    table: F32
    domain_min: tuple[float, float, float] = (0.0, 0.0, 0.0)
    domain_max: tuple[float, float, float] = (1.0, 1.0, 1.0)
    title: str = ""
    _coeffs: F32 | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table = np.asarray(self.table, dtype=np.float32)
        if table.ndim != 4 or table.shape[3] != 3 or len(set(table.shape[:3])) != 1:
            raise ValueError(f"a LUT table must have shape (n, n, n, 3), not {table.shape}")
        if not MIN_SIZE <= table.shape[0] <= MAX_SIZE:
            raise ValueError(f"LUT size {table.shape[0]} is outside {MIN_SIZE}..{MAX_SIZE}")
        self.table = np.ascontiguousarray(table)

    @property
    def size(self) -> int:
        return int(self.table.shape[0])

    @classmethod
    def identity(cls, size: int = 33, title: str = "neutral") -> Lut3D:
        return cls(identity_table(size), title=title)

    def coefficients(self) -> F32:
        """Per-cell trilinear polynomial coefficients, shape ((size-1)³, 3, 8), cached."""
        if self._coeffs is None:
            self._coeffs = _cell_coefficients(self.table)
        return self._coeffs

    def file_order(self) -> F32:
        """The table as .cube rows (red fastest): shape (size³, 3), also the GPU texel order."""
        return np.ascontiguousarray(self.table.transpose(2, 1, 0, 3)).reshape(-1, 3)


def identity_table(size: int) -> F32:
    """The table that maps every colour to itself, shape (size, size, size, 3)."""
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([r, g, b], axis=-1)


# ----------------------------------------------------------------------------- .cube files

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TRIPLET = re.compile(rf"^\s*({_NUMBER})\s+({_NUMBER})\s+({_NUMBER})\s*$")


def parse_cube(text: str, source: str = "<cube>") -> Lut3D:
    """Parse the text of a `.cube` file; every problem names `source` and the line number."""
    size = 0
    title = ""
    dmin, dmax = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    rows: list[tuple[float, float, float]] = []
    data_line = 0  # line of the first triplet, for "too few rows"

    def fail(line_no: int, why: str) -> LutError:
        return LutError(f"{source}, line {line_no}: {why}")

    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        keyword = line.split(None, 1)[0].upper()
        if keyword == "TITLE":
            match = re.match(r'^TITLE\s+"?(.*?)"?\s*$', line, re.IGNORECASE)
            title = match.group(1) if match else ""
        elif keyword == "LUT_3D_SIZE":
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise fail(line_no, f"LUT_3D_SIZE needs one whole number, not {line!r}")
            size = int(parts[1])
            if not MIN_SIZE <= size <= MAX_SIZE:
                raise fail(line_no, f"LUT_3D_SIZE {size} is outside {MIN_SIZE}..{MAX_SIZE}")
        elif keyword == "LUT_1D_SIZE":
            raise fail(line_no, "this is a 1D LUT; Neon Bar needs a 3D LUT (LUT_3D_SIZE)")
        elif keyword in ("DOMAIN_MIN", "DOMAIN_MAX"):
            parts = line.split()[1:]
            try:
                values = tuple(float(p) for p in parts)
            except ValueError:
                values = ()
            if len(values) != 3 or not all(map(math.isfinite, values)):
                raise fail(line_no, f"{keyword} needs three numbers, not {line!r}")
            if keyword == "DOMAIN_MIN":
                dmin = values
            else:
                dmax = values
        elif keyword in ("LUT_1D_INPUT_RANGE", "LUT_3D_INPUT_RANGE"):
            parts = line.split()[1:]
            try:
                lo, hi = (float(p) for p in parts)
            except ValueError:
                raise fail(line_no, f"{keyword} needs two numbers, not {line!r}") from None
            dmin, dmax = (lo, lo, lo), (hi, hi, hi)
        else:
            match = _TRIPLET.match(line)
            if not match:
                raise fail(line_no, f"expected three numbers or a keyword, not {raw.strip()!r}")
            if not size:
                raise fail(line_no, "a data row comes before LUT_3D_SIZE")
            if len(rows) == size**3:
                raise fail(line_no, f"more than {size}³ = {size**3} data rows")
            values = tuple(float(v) for v in match.groups())
            if not all(map(math.isfinite, values)):
                raise fail(line_no, "a data row holds a value that is not finite")
            data_line = data_line or line_no
            rows.append(values)  # type: ignore[arg-type]
    last_line = len(text.splitlines())
    if not size:
        raise LutError(f"{source}: no LUT_3D_SIZE line, so this is not a 3D .cube file")
    if len(rows) != size**3:
        raise fail(last_line, f"file ends after {len(rows)} of {size**3} data rows")
    if any(hi <= lo for lo, hi in zip(dmin, dmax, strict=True)):
        raise LutError(f"{source}: DOMAIN_MAX {dmax} must be above DOMAIN_MIN {dmin}")
    # Rows run red fastest, so a C-order reshape indexes [b, g, r]; flip to [r, g, b].
    table = np.asarray(rows, dtype=np.float32).reshape(size, size, size, 3).transpose(2, 1, 0, 3)
    return Lut3D(table, domain_min=dmin, domain_max=dmax, title=title)


def read_cube(path: str | Path) -> Lut3D:
    """Read a `.cube` file; a missing or broken file raises LutError with a sentence."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise LutError(f"LUT file {path} does not exist") from None
    except IsADirectoryError:
        raise LutError(f"{path} is a directory, not a .cube file") from None
    except OSError as exc:
        raise LutError(f"cannot read {path}: {exc.strerror}") from None
    return parse_cube(text, source=str(path))


def format_cube(lut: Lut3D, comments: tuple[str, ...] = ()) -> str:
    """The `.cube` text for a LUT (6 decimals: far below 8-bit and GPU texture precision)."""
    lines = [f"# {c}" for c in comments]
    if lut.title:
        lines.append(f'TITLE "{lut.title}"')
    lines.append(f"LUT_3D_SIZE {lut.size}")
    if lut.domain_min != (0.0, 0.0, 0.0) or lut.domain_max != (1.0, 1.0, 1.0):
        lines.append("DOMAIN_MIN {:.6g} {:.6g} {:.6g}".format(*lut.domain_min))
        lines.append("DOMAIN_MAX {:.6g} {:.6g} {:.6g}".format(*lut.domain_max))
    rows = lut.file_order().astype(np.float64)
    lines.extend(f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in rows)
    return "\n".join(lines) + "\n"


def write_cube(lut: Lut3D, path: str | Path, comments: tuple[str, ...] = ()) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(format_cube(lut, comments), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


# ----------------------------------------------------------------------------- CPU apply


def _cell_coefficients(table: F32) -> F32:
    """Trilinear polynomial per cell: f = c0 + c1x + c2y + c3z + c4xy + c5xz + c6yz + c7xyz.

    Returns float32 ((n-1)³, 3, 8): cell index (r, g, b) flattened with blue fastest, then
    channel, then coefficient, so one pixel's lookup reads 96 contiguous bytes.
    """
    t = table.astype(np.float64)
    m = t.shape[0] - 1

    def corner(a: int, b: int, c: int) -> NDArray[np.float64]:
        return t[a : m + a, b : m + b, c : m + c]

    c000, c100, c010, c001 = corner(0, 0, 0), corner(1, 0, 0), corner(0, 1, 0), corner(0, 0, 1)
    c110, c101, c011, c111 = corner(1, 1, 0), corner(1, 0, 1), corner(0, 1, 1), corner(1, 1, 1)
    coeffs = [
        c000,
        c100 - c000,
        c010 - c000,
        c001 - c000,
        c110 - c100 - c010 + c000,
        c101 - c100 - c001 + c000,
        c011 - c010 - c001 + c000,
        c111 - c110 - c101 - c011 + c100 + c010 + c001 - c000,
    ]
    stacked = np.stack(coeffs, axis=-1)  # (m, m, m, 3, 8)
    return np.ascontiguousarray(stacked.reshape(m**3, 3, 8).astype(np.float32))


def _apply_numpy(src: F32, coeffs: F32, m: int, out: F32) -> None:
    """Chunked numpy trilinear on (P, 3) pixels already normalised to 0..1."""
    ones = np.ones(8, np.float32)
    scale = np.float32(m)

    def chunk(start: int) -> None:
        px = src[start : start + CHUNK_PIXELS]
        n = len(px)
        s = px * scale
        np.clip(s, 0, scale, out=s)
        i = s.astype(np.int32)
        np.minimum(i, m - 1, out=i)
        s -= i
        cell = i[:, 0] * (m * m)
        cell += i[:, 1] * m
        cell += i[:, 2]
        g = np.take(coeffs.reshape(-1, 24), cell, axis=0)
        mono = np.empty((n, 8), np.float32)
        mono[:, 0] = 1.0
        mono[:, 1:4] = s
        np.multiply(s[:, 0], s[:, 1], out=mono[:, 4])
        np.multiply(s[:, 0], s[:, 2], out=mono[:, 5])
        np.multiply(s[:, 1], s[:, 2], out=mono[:, 6])
        np.multiply(mono[:, 4], s[:, 2], out=mono[:, 7])
        g3 = g.reshape(n, 3, 8)
        g3 *= mono[:, None, :]
        # A matrix-vector product sums each row of 8 far faster than .sum(axis=-1).
        np.matmul(g.reshape(n * 3, 8), ones, out=out[start : start + n].reshape(-1))

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(chunk, range(0, len(src), CHUNK_PIXELS)))


def _compile_numba() -> Callable[[F32, F32, int, F32], None] | None:
    try:
        import numba  # optional accelerator
    except ImportError:
        return None

    @numba.njit(parallel=True, fastmath=True, cache=True, boundscheck=False)
    def trilinear(src: F32, coeffs: F32, m: int, out: F32) -> None:
        # coeffs is the flat ((m)³ * 3 * 8,) view: explicit offsets beat per-channel slices.
        top = np.float32(m)
        zero = np.float32(0.0)
        last = np.int32(m - 1)
        for p in numba.prange(src.shape[0]):
            # Clamp to the lattice; the top cell keeps its far corner (fraction 1).
            fr = src[p, 0] * top
            fg = src[p, 1] * top
            fb = src[p, 2] * top
            fr = zero if fr < zero else (top if fr > top else fr)
            fg = zero if fg < zero else (top if fg > top else fg)
            fb = zero if fb < zero else (top if fb > top else fb)
            ir = np.int32(fr)
            ig = np.int32(fg)
            ib = np.int32(fb)
            ir = last if ir > last else ir
            ig = last if ig > last else ig
            ib = last if ib > last else ib
            x = fr - np.float32(ir)
            y = fg - np.float32(ig)
            z = fb - np.float32(ib)
            xy, xz, yz = x * y, x * z, y * z
            xyz = xy * z
            cell = ((ir * m + ig) * m + ib) * 24
            for ch in range(3):
                o = cell + ch * 8
                out[p, ch] = (
                    coeffs[o]
                    + x * coeffs[o + 1]
                    + y * coeffs[o + 2]
                    + z * coeffs[o + 3]
                    + xy * coeffs[o + 4]
                    + xz * coeffs[o + 5]
                    + yz * coeffs[o + 6]
                    + xyz * coeffs[o + 7]
                )

    return trilinear


_KERNEL: list[Callable[[F32, F32, int, F32], None] | None] = []


def _kernel() -> Callable[[F32, F32, int, F32], None] | None:
    if not _KERNEL:
        _KERNEL.append(_compile_numba())
    return _KERNEL[0]


def apply(lut: Lut3D, image: AnyArray, use_numba: bool | None = None) -> F32:
    """Grade an image (…, 3) with trilinear interpolation; returns float32 of the same shape.

    Inputs are clamped to the LUT's domain, as colour-science does. Integer images (8- or
    16-bit frames straight from OpenCV, RGB order) are read as 0..1. `use_numba=False` forces
    the numpy path (tests compare the two).
    """
    image = np.asarray(image)
    if image.shape[-1:] != (3,):
        raise ValueError(f"an image to grade must end in 3 channels, not {image.shape}")
    if np.issubdtype(image.dtype, np.integer):
        image = image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    src = np.ascontiguousarray(image, dtype=np.float32).reshape(-1, 3)
    dmin = np.asarray(lut.domain_min, np.float32)
    dmax = np.asarray(lut.domain_max, np.float32)
    if np.any(dmin != 0) or np.any(dmax != 1):
        src = (src - dmin) / (dmax - dmin)
    out = np.empty_like(src)
    m = lut.size - 1
    kernel = _kernel() if use_numba is not False else None
    if use_numba and kernel is None:
        raise RuntimeError("numba is not installed")
    if kernel is not None:
        kernel(src, lut.coefficients().reshape(-1), m, out)
    else:
        _apply_numpy(src, lut.coefficients(), m, out)
    return out.reshape(image.shape)


# ----------------------------------------------------------------------------- learn a look


def fit(
    source: AnyArray,
    reference: AnyArray,
    size: int = 33,
    steps: int = 300,
    smoothness: float = 1.0,
    seed: int = 0,
) -> Lut3D:
    """Learn a smooth LUT that moves `source`'s palette toward `reference`'s.

    Both images are float RGB in 0..1 (display-referred, as stored in PNG/JPEG). The data term is
    a sliced Wasserstein distance between the graded source pixels and the reference pixels in
    Oklab (so distances are roughly perceptual); the prior penalises the lattice Laplacian of the
    LUT's offset from identity, which keeps it smooth and extends the grade to colours the source
    does not contain instead of leaving them untouched next to moved neighbours.

    Args:
        source: (…, 3) image whose colours the LUT is fitted on.
        reference: (…, 3) still whose palette is the target.
        size: LUT_3D_SIZE of the result.
        steps: Adam iterations (300 takes a few seconds on a CPU).
        smoothness: weight of the Laplacian prior; raise it for a gentler, broader grade.
        seed: random seed for pixel sampling and projections (fits are reproducible).
    """
    import torch  # heavy: only fitting needs it
    import torch.nn.functional as func

    if not MIN_SIZE <= size <= 65:
        raise UserError(f"--size must be between {MIN_SIZE} and 65, not {size}")
    # The tensors are small: one thread is as fast as two alone, and far faster (7x measured)
    # when other processes share the cores, where torch's worker threads spin and wait.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        table_np = _fit_table(torch, func, source, reference, size, steps, smoothness, seed)
    finally:
        torch.set_num_threads(threads)
    return Lut3D(table_np, title="fitted")


def _fit_table(
    torch: Any,
    func: Any,
    source: AnyArray,
    reference: AnyArray,
    size: int,
    steps: int,
    smoothness: float,
    seed: int,
) -> F32:
    """The optimisation behind `fit`; returns the (size, size, size, 3) numpy table."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    def sample(img: AnyArray, count: int = 4096) -> Any:
        px = np.asarray(img, np.float32).reshape(-1, 3)
        idx = rng.choice(len(px), size=count, replace=len(px) < count)
        return torch.from_numpy(np.clip(px[idx], 0.0, 1.0))

    src = sample(source)
    ref_lab = _oklab(sample(reference, len(src)), torch)

    identity = torch.from_numpy(identity_table(size))  # [r, g, b, c]
    offset = torch.zeros_like(identity, requires_grad=True)
    opt = torch.optim.Adam([offset], lr=0.01)
    # grid_sample wants (N, C, D, H, W) with grid (x, y, z) -> (W, H, D): store [c, b, g, r].
    grid = (src * 2 - 1).view(1, -1, 1, 1, 3)

    for _ in range(steps):
        table = (identity + offset).permute(3, 2, 1, 0).unsqueeze(0)
        graded = func.grid_sample(table, grid, mode="bilinear", align_corners=True)
        graded = graded.view(3, -1).t()
        lab = _oklab(graded.clamp(0.0, 1.0), torch)
        proj = torch.randn(3, 32, generator=gen)
        proj = proj / proj.norm(dim=0, keepdim=True)
        a = torch.sort(lab @ proj, dim=0).values
        b = torch.sort(ref_lab @ proj, dim=0).values
        data = ((a - b) ** 2).mean()
        lap = _laplacian(offset, func)
        loss = data + smoothness * 0.5 * (lap**2).mean() + 1e-4 * (offset**2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    fitted: F32 = np.asarray((identity + offset).detach().clamp(0.0, 1.0).numpy(), np.float32)
    return fitted


def _oklab(rgb: Any, torch: Any) -> Any:
    """sRGB-encoded 0..1 -> Oklab (Björn Ottosson), differentiable."""
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m1 = torch.tensor(
        [
            [0.4122214708, 0.5363325363, 0.0514459929],
            [0.2119034982, 0.6806995451, 0.1073969566],
            [0.0883024619, 0.2817188376, 0.6299787005],
        ]
    )
    m2 = torch.tensor(
        [
            [0.2104542553, 0.7936177850, -0.0040720468],
            [1.9779984951, -2.4285922050, 0.4505937099],
            [0.0259040371, 0.7827717662, -0.8086757660],
        ]
    )
    lms = (lin @ m1.t()).clamp_min(1e-9) ** (1.0 / 3.0)
    return lms @ m2.t()


def _laplacian(field: Any, func: Any) -> Any:
    """Discrete Laplacian of a (n, n, n, 3) lattice field, boundary included.

    Edge replication (a zero-slope boundary) keeps the faces of the cube regularised too; an
    interior-only Laplacian lets the outermost lattice points kink away from their neighbours.
    """
    vol = func.pad(field.permute(3, 0, 1, 2).unsqueeze(0), (1, 1, 1, 1, 1, 1), mode="replicate")
    c = vol[..., 1:-1, 1:-1, 1:-1]
    return (
        vol[..., 2:, 1:-1, 1:-1]
        + vol[..., :-2, 1:-1, 1:-1]
        + vol[..., 1:-1, 2:, 1:-1]
        + vol[..., 1:-1, :-2, 1:-1]
        + vol[..., 1:-1, 1:-1, 2:]
        + vol[..., 1:-1, 1:-1, :-2]
        - 6 * c
    )


# ----------------------------------------------------------------------------- images + CLI


def read_image(path: str | Path) -> F32:
    """An image file as float32 RGB in 0..1 (8- and 16-bit PNG/JPEG/TIFF; EXR stays linear)."""
    import cv2  # only the CLI and tools touch image files

    path = Path(path)
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if img is None:
        raise UserError(f"{path} is not an image OpenCV can read (try PNG or JPEG)")
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(img.dtype, 1.0)
    return np.ascontiguousarray(img[..., ::-1], dtype=np.float32) / np.float32(scale)


def write_image(path: str | Path, rgb: AnyArray) -> None:
    """Write float RGB 0..1 as 8-bit (16-bit for .tif/.tiff, float for .exr)."""
    import cv2

    path = Path(path)
    bgr = np.ascontiguousarray(rgb[..., ::-1], dtype=np.float32)
    suffix = path.suffix.lower()
    if suffix == ".exr":
        data = bgr
    elif suffix in (".tif", ".tiff"):
        data = (np.clip(bgr, 0, 1) * 65535 + 0.5).astype(np.uint16)
    else:
        data = (np.clip(bgr, 0, 1) * 255 + 0.5).astype(np.uint8)
    try:
        ok = cv2.imwrite(str(path), data)
    except cv2.error:
        ok = False
    if not ok:
        raise UserError(f"cannot write {path}; use a .png, .jpg or .tif in a folder that exists")


def _neutral_source(count: int = 32768, seed: int = 0) -> F32:
    """Colours to fit on when no --source is given: the RGB cube, denser in the darks."""
    rng = np.random.default_rng(seed)
    return (rng.random((count, 3), dtype=np.float32) ** 1.6).astype(np.float32)


def run(args: argparse.Namespace) -> int:
    """`neonbar lut fit|apply`."""
    if args.lut_command == "fit":
        reference = read_image(args.reference)
        source = read_image(args.source) if args.source else _neutral_source()
        if args.steps < 1 or not 0 <= args.smoothness <= 1000:
            raise UserError("--steps must be at least 1 and --smoothness between 0 and 1000")
        lut = fit(source, reference, size=args.size, steps=args.steps, smoothness=args.smoothness)
        lut.title = Path(args.out).stem
        note = f"fitted by neonbar lut fit toward {Path(args.reference).name}"
        write_cube(lut, args.out, comments=(note,))
        print(f"wrote {args.out} ({lut.size}³)")
        return 0
    lut = read_cube(args.cube)
    image = read_image(args.input)
    write_image(args.output, apply(lut, image))
    print(f"wrote {args.output}")
    return 0
