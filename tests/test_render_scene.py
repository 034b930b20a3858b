"""The renderer's speed devices leave the pixels alone: the subject-box render region and the BVH
instance anchor. Each check runs Blender (the bpy wheel) in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_render_meshes import avatar

pytestmark = pytest.mark.blender

SNIPPET = r"""
import json, sys
from pathlib import Path
import bpy, numpy as np
from PIL import Image
from avatex_core.render_settings import RenderSettings, View
from blender_addon.render.loop import SubjectRenderer

mesh, out, denoise = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
settings = RenderSettings(resolution=96, samples=8, levels=("wild",), denoise=denoise)
r = SubjectRenderer("a", Path(mesh), settings)
light = {"level": "wild", "kind": "point", "position_camera": [1.0, 1.0, 0.4], "ambient": 0.3,
         "diffuse": 0.7, "color": [1.0, 1.0, 1.0], "radius": 0.0, "falloff": "constant"}
view = View(1, 45.0, 0.0)
def shot(name):
    r.render_lit(view, light, out / name, 5)
    return np.asarray(Image.open(out / name)).astype(int)
base = shot("base.png")
anchors = [o for o in bpy.data.objects if o.name.startswith("avatex_anchor_")]
for o in anchors:
    bpy.data.objects.remove(o)
no_anchor = shot("no_anchor.png")
r.region = lambda v: None
full = shot("full.png")
result = {"anchors": len(anchors),
          "anchor_max": int(np.abs(base - no_anchor).max()),
          "anchor_frac": float((base != no_anchor).mean()),
          "region_max": int(np.abs(no_anchor - full).max()),
          "region_mean": float(np.abs(no_anchor - full).mean()),
          "outside_alpha": int(full[..., 3][:, :20].max())}
from blender_addon.render.scene import render_result_pixels
result["readback_equal"] = bool(np.array_equal(render_result_pixels(bpy.context.scene), full))
print("RESULT " + json.dumps(result))
"""


def _run(tmp_path, denoise: bool) -> dict:
    script = tmp_path / "check.py"
    script.write_text(SNIPPET)
    proc = subprocess.run([sys.executable, str(script), str(avatar("avatar_0000", ".obj")), str(tmp_path),
                           "1" if denoise else "0"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(lines[-1][len("RESULT "):])


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
