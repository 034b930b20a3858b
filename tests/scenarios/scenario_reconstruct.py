"""Installed-extension scenario: Reconstruct on an image datablock imports the mesh at the 3D cursor."""

from __future__ import annotations

from typing import TYPE_CHECKING

import bpy
import numpy as np

if TYPE_CHECKING:
    from extension import Extension


def imports_the_mesh_at_the_cursor(ext: Extension, data: str, image: str, checkpoint: str) -> dict:
    mi, runtime = ext.mi, ext.runtime
    endpoint, _ = ext.serve("--root", data)
    ext.use(endpoint)
    rgba = np.load(image)
    img = bpy.data.images.new("person.png", rgba.shape[1], rgba.shape[0], alpha=True)
    img.pixels.foreach_set(rgba[::-1].ravel())
    s = bpy.context.scene.avatex
    s.image_source, s.image = "DATABLOCK", img
    s.checkpoint, s.resolution = checkpoint, 48
    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    assert bpy.ops.avatex.reconstruct() == {"FINISHED"}
    ext.tick_until(lambda: not runtime.RUNTIME.latest("reconstruct").active, 400)
    task = runtime.RUNTIME.latest("reconstruct")
    obj = bpy.data.objects.get("person")
    out = {"state": task.state, "message": task.message, "result": task.result}
    if obj is not None:
        colors = mi.read_point_colors(obj.data)
        out.update(vertices=len(obj.data.vertices), faces=len(obj.data.polygons),
                   location=list(obj.location), matrix=[list(r) for r in obj.matrix_world],
                   color_attr=obj.data.color_attributes.default_color_name,
                   colors_min=float(colors.min()) if len(colors) else 0.0,
                   colors_max=float(colors.max()) if len(colors) else 1.0,
                   material=[m.name for m in obj.data.materials],
                   checkpoint=obj.get("avatex_checkpoint"),
                   active=bpy.context.view_layer.objects.active.name)
    return out
