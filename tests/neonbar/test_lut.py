"""neonbar.lut: .cube files, CPU grading against colour-science, fitting, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neonbar import lut as L
from neonbar.cli import main
from neonbar.errors import UserError

colour = pytest.importorskip("colour")

LUT_DIR = Path(__file__).resolve().parents[2] / "assets" / "luts"
SHIPPED = ("orange_haze", "teal_neon", "mood_for_love", "neutral")


def wavy_lut(size: int = 17, domain: bool = False) -> L.Lut3D:
    """A strongly non-linear LUT, so interpolation mistakes show."""
    t = L.identity_table(size)
    t = t ** np.array([0.7, 1.3, 1.0], np.float32) + 0.1 * np.sin(t[..., ::-1] * 5)
    if domain:
        return L.Lut3D(t, domain_min=(-0.1, 0.0, 0.0), domain_max=(1.2, 1.0, 1.5))
    return L.Lut3D(t)


def reference(lut: L.Lut3D, img: np.ndarray) -> np.ndarray:
    cs = colour.LUT3D(
        lut.table.astype(np.float64), domain=np.array([lut.domain_min, lut.domain_max])
    )
    return cs.apply(img.astype(np.float64))


@pytest.mark.parametrize("use_numba", [None, False])
@pytest.mark.parametrize("domain", [False, True])
def test_apply_matches_colour_science(use_numba: bool | None, domain: bool) -> None:
    lut = wavy_lut(domain=domain)
    rng = np.random.default_rng(3)
    # Out-of-range values too: both clamp to the domain.
    img = rng.uniform(-0.3, 1.6, (120, 160, 3)).astype(np.float32)
    out = L.apply(lut, img, use_numba=use_numba)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.abs(out - reference(lut, img)).max() <= 1e-3


def test_apply_hits_lattice_points_exactly() -> None:
    lut = wavy_lut(9)
    axis = np.linspace(0, 1, 9, dtype=np.float32)
    r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
    pts = np.stack([r, g, b], -1)
    assert np.abs(L.apply(lut, pts) - lut.table).max() < 1e-5


def test_identity_is_identity_and_clamps() -> None:
    img = np.array([[0.0, 0.25, 1.0], [0.5, 0.75, 0.125], [-1.0, 2.0, 0.5]], np.float32)
    out = L.apply(L.Lut3D.identity(5), img)
    assert np.allclose(out, np.clip(img, 0, 1), atol=1e-6)


def test_integer_images_are_read_as_zero_to_one() -> None:
    lut = wavy_lut()
    img8 = np.arange(0, 256, 5, dtype=np.uint8).repeat(3).reshape(-1, 3)
    assert np.allclose(L.apply(lut, img8), L.apply(lut, img8 / np.float32(255)), atol=1e-6)
    img16 = (img8.astype(np.uint16) * 257).reshape(1, -1, 3)
    assert np.allclose(L.apply(lut, img16), L.apply(lut, img8[None] / np.float32(255)), atol=1e-6)


def test_cube_round_trip_and_colour_science_reads_ours(tmp_path: Path) -> None:
    lut = wavy_lut(domain=True)
    lut.title = "wavy"
    path = tmp_path / "wavy.cube"
    L.write_cube(lut, path, comments=("made in a test",))
    text = path.read_text()
    assert text.startswith('# made in a test\nTITLE "wavy"\nLUT_3D_SIZE 17\nDOMAIN_MIN')
    back = L.read_cube(path)
    assert back.title == "wavy" and back.size == 17
    assert back.domain_min == pytest.approx(lut.domain_min)
    assert back.domain_max == pytest.approx(lut.domain_max)
    assert np.abs(back.table - lut.table).max() < 1e-5
    theirs = colour.io.read_LUT_IridasCube(str(path))
    assert np.abs(theirs.table - lut.table).max() < 1e-5


def test_red_changes_fastest() -> None:
    # Second row of a 2³ file is input (1, 0, 0): a LUT that swaps red and blue writes 0 0 1.
    rows = [(b, g, r) for b in (0, 1) for g in (0, 1) for r in (0, 1)]
    text = "LUT_3D_SIZE 2\n" + "\n".join(f"{a} {b} {c}" for a, b, c in rows)
    lut = L.parse_cube(text)
    out = L.apply(lut, np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32))
    assert np.allclose(out, [[0, 0, 1], [1, 0, 0]])


def test_comments_title_and_blank_lines() -> None:
    text = '# hello\n\nTITLE "Night"  # trailing\nLUT_3D_SIZE 2\n' + "0 0 0\n" * 8
    lut = L.parse_cube(text)
    assert lut.title == "Night" and lut.size == 2


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("TITLE x\n0 0 0\n", 2, "before LUT_3D_SIZE"),
        ("LUT_3D_SIZE 2\n0 0 0\n0 0 zero\n", 3, "expected three numbers"),
        ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 7, 8, "7 of 8"),
        ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 9, 10, "more than"),
        ("LUT_3D_SIZE two\n", 1, "whole number"),
        ("LUT_3D_SIZE 1\n", 1, "outside"),
        ("LUT_1D_SIZE 1024\n", 1, "1D LUT"),
        ("LUT_3D_SIZE 2\nDOMAIN_MIN 0 0\n", 2, "three numbers"),
        ("LUT_3D_SIZE 2\n0 0 0 0\n", 2, "expected three numbers"),
        ("LUT_3D_SIZE 2\n0 nan 0\n", 2, "expected three numbers"),
        ("LUT_3D_SIZE 2\n0 1e999 0\n", 2, "not finite"),
    ],
)
def test_broken_cube_names_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(L.LutError, match=rf"bad\.cube, line {line}: .*{words}"):
        L.parse_cube(text, source="bad.cube")


def test_broken_cube_other_errors(tmp_path: Path) -> None:
    with pytest.raises(L.LutError, match="no LUT_3D_SIZE"):
        L.parse_cube("# nothing here\n", source="empty.cube")
    with pytest.raises(L.LutError, match="DOMAIN_MAX"):
        L.parse_cube("LUT_3D_SIZE 2\nDOMAIN_MIN 1 1 1\nDOMAIN_MAX 0 1 1\n" + "0 0 0\n" * 8)
    with pytest.raises(L.LutError, match="does not exist"):
        L.read_cube(tmp_path / "missing.cube")
    assert issubclass(L.LutError, UserError)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_looks(name: str) -> None:
    lut = L.read_cube(LUT_DIR / f"{name}.cube")
    assert lut.size == 33 and lut.title == name
    assert lut.table.min() >= 0.0 and lut.table.max() <= 1.0
    grey = np.linspace(0, 1, 11, dtype=np.float32)[:, None].repeat(3, 1)
    out = L.apply(lut, grey)
    if name == "neutral":
        assert np.allclose(out, grey, atol=1e-5)
    else:
        # A look moves colours, and stays monotonic in brightness along the grey axis.
        assert np.abs(out - grey).max() > 0.03
        assert np.all(np.diff(out.mean(axis=1)) > 0)
    if name == "orange_haze":
        r, g, b = out[5]
        assert r > g > b  # mid grey turns amber
        assert out[0].min() > 0.01  # lifted blacks


def test_fit_moves_palette_toward_reference_smoothly() -> None:
    rng = np.random.default_rng(0)
    source = rng.uniform(0.2, 0.8, (48, 48, 3)).astype(np.float32)
    warm = np.stack(
        [
            rng.uniform(0.6, 0.9, (48, 48)),
            rng.uniform(0.3, 0.5, (48, 48)),
            rng.uniform(0, 0.2, (48, 48)),
        ],
        -1,
    ).astype(np.float32)
    lut = L.fit(source, warm, size=9, steps=80)
    graded = L.apply(lut, source).reshape(-1, 3)
    before = np.abs(source.reshape(-1, 3).mean(0) - warm.reshape(-1, 3).mean(0)).sum()
    after = np.abs(graded.mean(0) - warm.reshape(-1, 3).mean(0)).sum()
    assert after < 0.5 * before
    # Smooth: neighbouring lattice points move by similar amounts.
    offset = lut.table - L.identity_table(9)
    assert np.abs(np.diff(offset, axis=0)).max() < 0.25


def _write_png(path: Path, rgb: np.ndarray) -> None:
    L.write_image(path, rgb)


def test_cli_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = np.linspace(0, 1, 64 * 32 * 3, dtype=np.float32).reshape(32, 64, 3)
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    _write_png(src, img)
    assert main(["lut", "apply", str(LUT_DIR / "orange_haze.cube"), str(src), str(out)]) == 0
    graded = L.read_image(out)
    expected = L.apply(L.read_cube(LUT_DIR / "orange_haze.cube"), L.read_image(src))
    assert np.abs(graded - expected).max() <= 1.5 / 255


def test_cli_user_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cube = str(LUT_DIR / "neutral.cube")
    assert main(["lut", "apply", cube, str(tmp_path / "nope.png"), str(tmp_path / "o.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    assert main(["lut", "apply", cube, str(junk), str(tmp_path / "o.png")]) == 2
    assert "not an image" in capsys.readouterr().err
    bad = tmp_path / "bad.cube"
    bad.write_text("LUT_3D_SIZE 2\n0 0 0\n")
    _write_png(tmp_path / "in.png", np.zeros((4, 4, 3), np.float32))
    assert main(["lut", "apply", str(bad), str(tmp_path / "in.png"), str(tmp_path / "o.png")]) == 2
    assert "line 2" in capsys.readouterr().err


def test_cli_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fit = L.fit
    calls: list[tuple[int, float]] = []

    def quick_fit(
        s: np.ndarray, r: np.ndarray, size: int, steps: int, smoothness: float
    ) -> L.Lut3D:
        calls.append((steps, smoothness))
        return real_fit(s, r, size=size, steps=15, smoothness=smoothness)

    monkeypatch.setattr(L, "fit", quick_fit)
    ref = tmp_path / "ref.png"
    _write_png(ref, np.full((16, 16, 3), (0.8, 0.4, 0.1), np.float32))
    out = tmp_path / "look.cube"
    assert main(["lut", "fit", "--reference", str(ref), "--out", str(out), "--size", "5"]) == 0
    lut = L.read_cube(out)
    assert lut.size == 5 and lut.title == "look"
    assert calls == [(300, 1.0)]
    args = ["lut", "fit", "--reference", str(ref), "--out", str(out), "--smoothness", "4"]
    assert main([*args, "--steps", "40"]) == 0 and calls[-1] == (40, 4.0)
    assert main([*args, "--steps", "0"]) == 2


def test_fit_recovers_a_known_grade() -> None:
    """Fitting an image toward itself graded by a shipped look learns that look back."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:40, 0:60] / np.array([40.0, 60.0])[:, None, None]
    source = np.stack([xx, yy * 0.8, 0.5 + 0.4 * np.sin(xx * 6) * yy], -1).astype(np.float32)
    source = np.clip(source + rng.normal(0, 0.05, source.shape), 0, 1).astype(np.float32)
    target = L.apply(L.read_cube(LUT_DIR / "teal_neon.cube"), source)
    lut = L.fit(source, target, size=9, steps=200)
    before = np.abs(source - target).mean()
    after = np.abs(L.apply(lut, source) - target).mean()
    assert after < 0.5 * before, (before, after)
