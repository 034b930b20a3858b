"""Blender (bpy wheel): open a .blend written by ``avatex demo`` and read back its reconstruction.

``python scenario_read_blend.py FILE.blend OUT_DIR``: prints one ``RESULT {json}`` line (vertex count,
colour attributes, materials) and saves the mesh's ``patd`` / ``pipatd`` point attributes as
``OUT_DIR/patd.npy`` and ``OUT_DIR/pipatd.npy``.
"""

import json
import sys

import bpy
import numpy as np


def main(blend: str, out: str) -> dict:
    bpy.ops.wm.open_mainfile(filepath=blend)
    mesh = bpy.data.objects["reconstruction"].data
    for name in ("patd", "pipatd"):
        values = np.empty(len(mesh.vertices), np.float32)
        mesh.attributes[name].data.foreach_get("value", values)
        np.save(f"{out}/{name}.npy", values)
    return {"vertices": len(mesh.vertices), "color_attributes": [a.name for a in mesh.color_attributes],
            "active_color": mesh.color_attributes.active_color_name,
            "materials": [m.name for m in mesh.materials if m]}


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], sys.argv[2])), flush=True)
