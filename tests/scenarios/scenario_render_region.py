"""Blender (bpy wheel): render one lit view of a subject with and without the renderer's speed devices
(the BVH instance anchor, the subject-box render region) and report how far the pixels moved.

``python scenario_render_region.py MESH OUT_DIR DENOISE(0|1)`` with the repository on PYTHONPATH; prints
one ``RESULT {json}`` line.
"""

import json
import sys
from pathlib import Path

import bpy
import numpy as np
from PIL import Image

from avatex_core.render_settings import RenderSettings, View
from blender_addon.render.loop import SubjectRenderer
from blender_addon.render.scene import render_result_pixels

LIGHT = {"level": "wild", "kind": "point", "position_camera": [1.0, 1.0, 0.4], "ambient": 0.3,
         "diffuse": 0.7, "color": [1.0, 1.0, 1.0], "radius": 0.0, "falloff": "constant"}


def main(mesh: str, out: Path, denoise: bool) -> dict:
    settings = RenderSettings(resolution=96, samples=8, levels=("wild",), denoise=denoise)
    r = SubjectRenderer("a", Path(mesh), settings)
    view = View(1, 45.0, 0.0)

    def shot(name: str) -> np.ndarray:
        r.render_lit(view, LIGHT, out / name, 5)
        return np.asarray(Image.open(out / name)).astype(int)

    base = shot("base.png")
    anchors = [o for o in bpy.data.objects if o.name.startswith("avatex_anchor_")]
    for o in anchors:
        bpy.data.objects.remove(o)
    no_anchor = shot("no_anchor.png")
    r.region = lambda v: None
    full = shot("full.png")
    return {"anchors": len(anchors),
            "anchor_max": int(np.abs(base - no_anchor).max()),
            "anchor_frac": float((base != no_anchor).mean()),
            "region_max": int(np.abs(no_anchor - full).max()),
            "region_mean": float(np.abs(no_anchor - full).mean()),
            "outside_alpha": int(full[..., 3][:, :20].max()),
            "readback_equal": bool(np.array_equal(render_result_pixels(bpy.context.scene), full))}


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1")), flush=True)
