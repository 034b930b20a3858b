"""Audit results on a mesh object: the ``patd`` / ``pipatd`` attributes, the heatmap and its summary.

The backend's per-vertex CIEDE2000 errors land as float POINT attributes named ``patd`` and
``pipatd`` (the Spreadsheet shows the raw values), one of them is colour-mapped on the fixed scale of
:mod:`.heatmap` into the colour attribute ``avatex_heatmap``, which becomes the *active* colour (Solid
mode, shading colour "Attribute") while the reconstruction's own colours stay the *render* colour
(exporters, the audit's next request). The "avatex heatmap" material shows the same attribute in
Material Preview and Rendered mode. The summary numbers are stored on the object as the custom
property ``avatex_audit`` so they survive saving the file.

Used by the Audit operator (in timer-sized steps) and by ``render_scripts/audit_blend.py`` (at once).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import bpy
import numpy as np

from avatex_core import heatmap

from . import materials
from .mesh_import import (
    COLOR_ATTRIBUTE,
    read_point_floats,
    read_selection,
    set_point_colors_linear,
    set_point_floats,
)

METRICS = ("patd", "pipatd")
HEATMAP_ATTRIBUTE = "avatex_heatmap"
SUMMARY_PROPERTY = "avatex_audit"
_SAVED_MATERIALS = "avatex_saved_materials"


def apply_steps(obj: bpy.types.Object, patd: np.ndarray, pipatd: np.ndarray,
                summary: Mapping[str, Any] | None = None, *, show: str = "patd") -> Iterator[str]:
    """Write an audit result onto ``obj`` in a few bounded steps (each yields its stage name)."""
    mesh = obj.data
    n = len(mesh.vertices)
    for name, values in (("patd", patd), ("pipatd", pipatd)):
        if np.shape(values) != (n,):
            raise ValueError(f"{name} has shape {np.shape(values)} but {obj.name!r} has {n} vertices")
    set_point_floats(mesh, "patd", patd)
    set_point_floats(mesh, "pipatd", pipatd)
    yield "attributes"
    colors = heatmap.heatmap_linear_rgba(patd if show == "patd" else pipatd)
    yield "heatmap colours"
    set_point_colors_linear(mesh, HEATMAP_ATTRIBUTE, colors, active=True, render=False)
    _use_material(obj, materials.attribute_material(materials.HEATMAP_MATERIAL, HEATMAP_ATTRIBUTE))
    obj[SUMMARY_PROPERTY] = json.dumps(dict(summary or {}, shown=show))
    mesh.update()
    yield "material"


def apply(obj: bpy.types.Object, patd: np.ndarray, pipatd: np.ndarray,
          summary: Mapping[str, Any] | None = None, *, show: str = "patd") -> None:
    """:func:`apply_steps` all at once (scripts)."""
    for _ in apply_steps(obj, patd, pipatd, summary, show=show):
        pass


def show_heatmap(obj: bpy.types.Object, metric: str = "patd") -> None:
    """Colour the heatmap from the stored ``metric`` attribute and make it what every mode shows."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if obj.mode == "EDIT":  # attribute data is not reachable through the mesh in edit mode
        raise ValueError("leave Edit Mode to switch the heatmap")
    values = read_point_floats(obj.data, metric)
    if values is None:
        raise ValueError(f"{obj.name!r} has no {metric!r} attribute: run an audit first")
    set_point_colors_linear(obj.data, HEATMAP_ATTRIBUTE, heatmap.heatmap_linear_rgba(values),
                            active=True, render=False)
    _use_material(obj, materials.attribute_material(materials.HEATMAP_MATERIAL, HEATMAP_ATTRIBUTE))
    summary = summary_of(obj) or {}
    summary["shown"] = metric
    obj[SUMMARY_PROPERTY] = json.dumps(summary)
    obj.data.update()


def show_colors(obj: bpy.types.Object) -> None:
    """Back to the reconstruction's own colours (material and Solid-mode attribute)."""
    mesh = obj.data
    name = mesh.color_attributes.default_color_name
    if not name or name == HEATMAP_ATTRIBUTE:
        name = COLOR_ATTRIBUTE if COLOR_ATTRIBUTE in mesh.color_attributes else ""
    if name:
        mesh.color_attributes.active_color_name = name
    saved = obj.get(_SAVED_MATERIALS)
    mesh.materials.clear()
    if saved:
        for mat_name in json.loads(saved):
            mesh.materials.append(bpy.data.materials.get(mat_name))
        del obj[_SAVED_MATERIALS]
    elif name:
        mesh.materials.append(materials.attribute_material(materials.COLORS_MATERIAL, name))
    mesh.update()


def _use_material(obj: bpy.types.Object, mat: bpy.types.Material) -> None:
    """Show ``mat``, remembering the object's own materials (not ours) so show_colors can restore them."""
    mesh = obj.data
    own = [m.name for m in mesh.materials if m is not None
           and m.name not in (materials.HEATMAP_MATERIAL, materials.COLORS_MATERIAL)]
    if own and _SAVED_MATERIALS not in obj:
        obj[_SAVED_MATERIALS] = json.dumps(own)
    materials.assign_single_material(obj, mat)


def summary_of(obj: bpy.types.Object | None) -> dict[str, Any] | None:
    """The audit summary stored on ``obj``, or None."""
    if obj is None or SUMMARY_PROPERTY not in obj:
        return None
    try:
        return json.loads(obj[SUMMARY_PROPERTY])
    except (TypeError, ValueError):
        return None


def selection_stats(obj: bpy.types.Object) -> dict[str, Any] | None:
    """Mean ``patd`` / ``pipatd`` of the selected vertices (edit mode included), or None.

    In edit mode the selection lives in the edit mesh; ``update_from_editmode`` copies it to the mesh
    (its cost grows with the mesh, so callers run this on selection changes, not on every redraw).
    """
    if obj is None or obj.type != "MESH":
        return None
    mesh = obj.data
    if "patd" not in mesh.attributes:
        return None
    out: dict[str, Any] = {}
    if obj.mode == "EDIT":
        # Attribute values are only reachable through the BMesh in edit mode; the selection is read in
        # bulk after syncing, so the Python loop runs over the selected vertices only.
        import bmesh

        obj.update_from_editmode()
        index = np.flatnonzero(read_selection(mesh))
        bm = bmesh.from_edit_mesh(mesh)
        bm.verts.ensure_lookup_table()
        verts = bm.verts
        for metric in METRICS:
            layer = bm.verts.layers.float.get(metric)
            if layer is not None and len(index):
                out[metric] = float(np.mean([verts[i][layer] for i in index.tolist()]))
    else:
        selected = read_selection(mesh)
        index = np.flatnonzero(selected)
        for metric in METRICS:
            values = read_point_floats(mesh, metric)
            if values is not None and len(index):
                out[metric] = float(np.mean(values[index], dtype=np.float64))
    out["selected"] = int(len(index))
    return out
