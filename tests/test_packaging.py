"""Packaging tells the truth: a server-only host needs neither Panda3D nor torch."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ONLY = ("panda3d", "torch", "mediapipe", "cv2", "av")


def test_core_dependencies_leave_out_the_client_stack() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("panda3d", "torch", "mediapipe", "opencv"):
        assert name not in core
    extras = project["optional-dependencies"]
    assert {"client", "reactions", "scenes", "all", "dev"} <= set(extras)


def test_the_server_and_invites_import_no_client_library() -> None:
    code = (
        "import sys, server.main, server.app, neonbar.tokens, neonbar.cli\n"
        f"print([m for m in {CLIENT_ONLY!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


def test_every_pinned_requirement_is_in_the_constraints() -> None:
    pins = {
        line.split("==")[0].strip().lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for group in project["optional-dependencies"].values():
        wanted += [w for w in group if not w.startswith("neonbar[")]
    names = {w.split(">")[0].split("=")[0].split("<")[0].strip().lower() for w in wanted}
    assert names - pins == set()
