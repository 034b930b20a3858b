"""Held-out avatars rendered by the project's renderer, and the real photographs to composite them onto.

Shared by tests/test_masks.py and benchmarks/bench_masks.py: the front view (yaw 0) of each avatar of
tests/fixtures/valid, lit by the ``clear`` level at 512², through ``avatex render`` (the bpy wheel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import ROOT
from tests.helpers.render import cli

VALID = ROOT / "tests" / "fixtures" / "valid"
PHOTOS = ROOT / "tests" / "fixtures" / "photos"
AVATARS = ("Black_M_3_Milit", "Hispanic_F_2_Util", "White_M_1_Casual")


def photos() -> dict[str, np.ndarray]:
    """name -> uint8 RGB photograph (tests/fixtures/photos/*.jpg)."""
    return {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in sorted(PHOTOS.glob("*.jpg"))}


def render_front_views(out: Path, samples: int = 8) -> dict[str, np.ndarray]:
    """avatar -> uint8 RGBA front render (alpha = the true person mask), rendered into dataset ``out``."""
    proc = cli(["--meshes", *(VALID / a for a in AVATARS), "--out", out, "--views", "1", "--levels", "clear",
                "--samples", samples, "--albedo-samples", 1, "--resolution", 512])
    if proc.returncode != 0:
        raise RuntimeError(f"avatex render failed: {proc.stderr[-2000:]}")
    return {a: np.asarray(Image.open(out / "subjects" / a / "views" / "v000" / "clear.png").convert("RGBA"))
            for a in AVATARS}
