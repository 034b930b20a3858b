"""Apply :mod:`avatex_core.mesh_hygiene` to an imported Blender mesh, keeping UVs, materials and colours.

The decisions come from the shared module (the backend's mesh loading takes the same ones); this file
only reads the mesh with ``foreach_get`` and edits it with bmesh: flipped faces are reversed with their
corner data, dropped faces and vertices are deleted. File normals (custom split normals) are handled
here too, because Blender stores them relative to the faces around each vertex, so after any edit
they are set again corner by corner (matched by face and vertex): removing a coincident copy cannot
change the normals of the copy that stays. A file normal that points against its (repaired) face is
replaced by Blender's own normal for that corner (computed with the custom normals cleared), which
follows the face: a lit render then never shows a facet whose normal faces away from the light (the
black triangles of game-style characters). A zero vector in ``normals_split_custom_set`` does not do
this (Blender 4.5 keeps the stored normal). Smooth normals on thin slivers can point slightly against
their face too; replacing those changes nothing visible.
"""

from __future__ import annotations

import bmesh
import bpy
import numpy as np

from avatex_core import mesh_hygiene


def _arrays(mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (V, 3), padded faces (F, K), sizes (F,), loop index per face corner (F, K), present)."""
    n_v, n_p, n_l = len(mesh.vertices), len(mesh.polygons), len(mesh.loops)
    co = np.empty(n_v * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    start = np.empty(n_p, dtype=np.int64)
    total = np.empty(n_p, dtype=np.int64)
    mesh.polygons.foreach_get("loop_start", start)
    mesh.polygons.foreach_get("loop_total", total)
    corner_vertex = np.empty(n_l, dtype=np.int64)
    mesh.loops.foreach_get("vertex_index", corner_vertex)
    k = int(total.max()) if n_p else 3
    present = np.arange(k)[None, :] < total[:, None]
    loops = np.where(present, start[:, None] + np.arange(k)[None, :], 0)
    faces = np.where(present, corner_vertex[loops] if n_l else 0, 0)
    return co.reshape(-1, 3).astype(np.float64), faces, total, loops, present


def _corner_normals(mesh) -> np.ndarray:
    normals = np.empty(len(mesh.loops) * 3, dtype=np.float32)
    mesh.corner_normals.foreach_get("vector", normals)
    return normals.reshape(-1, 3)


def _clear_custom_normals(mesh, ob) -> None:
    """Back to Blender's own normals: the ``custom_normal`` attribute (4.4+), else the operator."""
    attr = mesh.attributes.get("custom_normal")
    if attr is not None:
        mesh.attributes.remove(attr)
    elif mesh.has_custom_normals and ob is not None:
        with bpy.context.temp_override(object=ob, active_object=ob, selected_objects=[ob]):
            bpy.ops.mesh.customdata_custom_splitnormals_clear()


def repair(mesh, ob=None) -> mesh_hygiene.Hygiene:
    """Inspect ``mesh`` (a bpy Mesh, used by object ``ob``) and repair it in place; the report says what
    was done."""
    vertices, faces, sizes, loops, present = _arrays(mesh)
    custom = bool(mesh.has_custom_normals) and len(mesh.loops) > 0
    normals = _corner_normals(mesh) if custom else None
    report = mesh_hygiene.inspect(vertices, faces, face_sizes=sizes,
                                  corner_normals=None if normals is None else normals[loops])
    if report.error or not report.counts:
        return report
    edited = bool((~report.keep_faces).any() or report.flip_faces.any() or (~report.keep_vertices).any())
    if edited:
        bm = bmesh.new()
        try:
            bm.from_mesh(mesh)
            bm.faces.ensure_lookup_table()
            bm.verts.ensure_lookup_table()
            flip = [bm.faces[i] for i in np.flatnonzero(report.flip_faces).tolist()]
            drop = [bm.faces[i] for i in np.flatnonzero(~report.keep_faces).tolist()]
            stray = [bm.verts[i] for i in np.flatnonzero(~report.keep_vertices).tolist()]
            if flip:
                bmesh.ops.reverse_faces(bm, faces=flip, flip_multires=True)
            if drop:
                bmesh.ops.delete(bm, geom=drop, context="FACES")
            stray = [v for v in stray if v.is_valid]  # "FACES" already took the ones only they used
            if stray:
                bmesh.ops.delete(bm, geom=stray, context="VERTS")
            bm.to_mesh(mesh)
        finally:
            bm.free()
        mesh.update()
    if custom and (edited or report.counts.get("bad_normals")):
        old = np.where(report.bad_corner_normals[..., None], np.nan, normals[loops])
        _restore_normals(mesh, ob, report, faces, present, old)
    return report


def _restore_normals(mesh, ob, report: mesh_hygiene.Hygiene, faces: np.ndarray, present: np.ndarray,
                     old: np.ndarray) -> None:
    """Give every corner of the edited mesh its normal from ``old`` (F, K, 3), matched by face and vertex;
    corners whose entry is NaN (or that have none) get Blender's own normal.

    Deleting keeps the order of the surviving faces and vertices, so old indices follow from the masks.
    """
    n_v = len(report.keep_vertices)
    kept_faces = np.flatnonzero(report.keep_faces)
    kept_vertices = np.flatnonzero(report.keep_vertices)
    old_keys = (np.arange(len(faces))[:, None] * n_v + faces)[present]
    order = np.argsort(old_keys)
    old_sorted, old_normals = old_keys[order], old[present][order]
    _, new_faces, _, new_loops, new_present = _arrays(mesh)
    poly = np.broadcast_to(np.arange(len(new_faces))[:, None], new_faces.shape)
    new_keys = kept_faces[poly[new_present]] * n_v + kept_vertices[new_faces[new_present]]
    at = np.clip(np.searchsorted(old_sorted, new_keys), 0, len(old_sorted) - 1)
    found = old_sorted[at] == new_keys
    target = np.full((len(mesh.loops), 3), np.nan, dtype=np.float32)
    target[new_loops[new_present][found]] = old_normals[at[found]]
    _clear_custom_normals(mesh, ob)
    auto = _corner_normals(mesh)
    missing = ~np.isfinite(target).all(axis=1)
    target[missing] = auto[missing]
    mesh.normals_split_custom_set(target)
