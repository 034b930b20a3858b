"""The renderer's speed devices leave the pixels alone: the subject-box render region and the BVH
instance anchor. Each check runs Blender (the bpy wheel) in its own process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.helpers.render import avatar
from tests.helpers.scenarios import SCENARIOS, result_of

pytestmark = pytest.mark.blender


def _run(tmp_path, denoise: bool) -> dict:
    script = SCENARIOS / "scenario_render_region.py"
    proc = subprocess.run([sys.executable, str(script), str(avatar("avatar_0000", ".obj")), str(tmp_path),
                           "1" if denoise else "0"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return result_of(proc)


def test_region_and_anchor_do_not_change_the_path_traced_pixels(tmp_path):
    r = _run(tmp_path, denoise=False)
    assert r["anchors"] == 1
    # The anchor changes the BVH layout only: float rounding in traversal, at most 1/255 on a few pixels.
    assert r["anchor_max"] <= 1 and r["anchor_frac"] < 0.005
    assert r["region_max"] == 0  # per-pixel sampling is independent of the render region
    assert r["outside_alpha"] == 0
    assert r["readback_equal"]  # pixels read back through tmpfs equal the written PNG


def test_region_with_the_denoiser_stays_within_its_noise(tmp_path):
    r = _run(tmp_path, denoise=True)
    # OIDN sees less context around the subject; its output moves by a fraction of a level on average.
    assert r["region_mean"] < 0.5 and r["region_max"] < 40
