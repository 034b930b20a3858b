"""Subjects: import with Blender's own importers, normalise into the canonical space, export the GT mesh.

*Source coordinates* are the coordinates the file stores (what ``backend.meshio.load_mesh`` reads), so
the stored ``Normalization`` maps the source file's vertices to canonical space. OBJ, PLY and FBX are
imported without axis conversion; the glTF importer always turns glTF's y-up into Blender's z-up, which
is undone by ``source_from_blender``. Objects from a .blend (the add-on's scene subjects) keep Blender's
world coordinates (z-up, front toward -Y), which the z-up rule of ``canonical.normalization_for`` maps
to canonical exactly like a z-up scan.

The subject's root objects are parented to an empty whose matrix is
``BLENDER_FROM_CANONICAL @ normalization.matrix() @ source_from_blender``: Blender world coordinates of
the subject are then ``BLENDER_FROM_CANONICAL @ canonical``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from avatex_core import canonical, mesh_hygiene
from avatex_core.lighting import linear_to_srgb, srgb_to_linear

from . import hygiene as hygiene_mod
from . import materials as materials_mod
from .gtmesh import GTMesh
from .pngio import encode_png

_B = np.asarray(canonical.BLENDER_FROM_CANONICAL, dtype=np.float64)
_GLTF_SOURCE_FROM_BLENDER = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1.0]])


class SubjectError(ValueError):
    """A subject cannot be used; the message names the file and the problem."""


@dataclass
class Subject:
    sid: str
    source: Path
    objects: list
    meshes: list
    root: object
    normalization: canonical.Normalization
    source_from_blender: np.ndarray
    vertex_count: int
    face_count: int
    canonical_vertices: np.ndarray  # (N, 3) float32, evaluated: what the camera sees (render regions)
    hygiene: dict | None = None  # what repair_meshes changed (subject.json "hygiene")


def reset_scene():
    """A fresh empty scene (factory settings), discarding everything of the previous subject."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def _import_file(path: Path) -> tuple[list, np.ndarray]:
    """Import one file into the current scene; returns (new objects, source_from_blender)."""
    before = set(bpy.data.objects)
    suffix = path.suffix.lower()
    source_from_blender = np.eye(4)
    try:
        if suffix == ".ply":
            bpy.ops.wm.ply_import(filepath=str(path), forward_axis="Y", up_axis="Z", import_colors="SRGB")
        elif suffix == ".obj":
            bpy.ops.wm.obj_import(filepath=str(path), forward_axis="Y", up_axis="Z",
                                  use_split_objects=False, use_split_groups=False)
        elif suffix in (".glb", ".gltf"):
            bpy.ops.import_scene.gltf(filepath=str(path))
            source_from_blender = _GLTF_SOURCE_FROM_BLENDER
        elif suffix == ".fbx":
            bpy.ops.import_scene.fbx(filepath=str(path), use_manual_orientation=True, axis_forward="Y",
                                     axis_up="Z", use_anim=False)
        elif suffix == ".blend":
            with bpy.data.libraries.load(str(path), link=False) as (src, dst):
                dst.objects = list(src.objects)
            for ob in dst.objects:
                if ob is not None and ob.name not in bpy.context.scene.collection.objects:
                    bpy.context.scene.collection.objects.link(ob)
        else:
            raise SubjectError(f"{path}: unsupported subject type {suffix!r}")
    except SubjectError:
        raise
    except Exception as exc:  # importers raise RuntimeError with Blender's report text
        first = str(exc).strip().splitlines()
        raise SubjectError(f"{path}: Blender could not import it: {first[-1] if first else exc}") from None
    objects = [ob for ob in bpy.data.objects if ob not in before]
    return objects, source_from_blender


def _world_vertices(ob, depsgraph) -> np.ndarray:
    ob_eval = ob.evaluated_get(depsgraph)
    mesh = ob_eval.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        co = co.reshape(-1, 3).astype(np.float64)
        m = np.array(ob_eval.matrix_world, dtype=np.float64)
        return co @ m[:3, :3].T + m[:3, 3]
    finally:
        ob_eval.to_mesh_clear()


def _smooth_if_normalless(mesh) -> None:
    """Scans without normals (most PLYs) import flat-shaded; a body is smooth, so shade it smooth.

    Meshes that bring their own normals (custom split normals) or any smooth face keep their shading.
    """
    if mesh.has_custom_normals or not len(mesh.polygons):
        return
    flags = np.empty(len(mesh.polygons), dtype=bool)
    mesh.polygons.foreach_get("use_smooth", flags)
    if not flags.any():
        mesh.shade_smooth()


def repair_meshes(path: Path, meshes: list) -> tuple[list, dict]:
    """Repair every imported mesh (avatex_core.mesh_hygiene); returns (usable objects, record).

    An object with nothing usable left is named in the record (the caller removes it); when that leaves
    no object, the subject fails with one line naming the mesh and its problem.
    """
    reports, per_object, dropped, usable = [], {}, {}, []
    done: dict[int, mesh_hygiene.Hygiene] = {}
    for ob in meshes:
        key = ob.data.as_pointer()  # a mesh shared by several objects is repaired once
        report = done.get(key) or hygiene_mod.repair(ob.data, ob)
        if key not in done:
            done[key] = report
            reports.append(report)
        if report.error:
            dropped[ob.name] = report.error
            continue
        usable.append(ob)
        if report.actions():
            per_object[ob.name] = report.actions()
    if not usable:
        name, problem = next(iter(dropped.items()))
        raise SubjectError(f"{path}: mesh {name!r} cannot be repaired: {problem}")
    counts = mesh_hygiene.merge_counts([r for r in reports if not r.error])
    record = {"counts": counts, "actions": mesh_hygiene.describe(counts), "objects": per_object}
    if dropped:
        record["dropped_objects"] = dropped
    return usable, record


def load_subject(sid: str, path: Path, up: str = "auto") -> Subject:
    """Import ``path`` into the (fresh) scene and place it in canonical space."""
    path = Path(path)
    if not path.is_file():
        raise SubjectError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise SubjectError(f"{path}: file is empty")
    objects, source_from_blender = _import_file(path)
    meshes = [ob for ob in objects if ob.type == "MESH"]
    if not meshes:
        raise SubjectError(f"{path}: holds no mesh (objects found: "
                           f"{', '.join(sorted(ob.type for ob in objects)) or 'none'})")
    meshes, repairs = repair_meshes(path, meshes)
    unusable = set(repairs.get("dropped_objects", ()))
    for ob in [ob for ob in objects if ob.name in unusable]:
        objects.remove(ob)
        bpy.data.objects.remove(ob)
    for ob in meshes:
        _smooth_if_normalless(ob.data)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    world = [_world_vertices(ob, depsgraph) for ob in meshes]
    faces = 0
    for ob in meshes:
        faces += sum(max(0, len(p.vertices) - 2) for p in ob.data.polygons)
    verts = np.concatenate(world) if world else np.zeros((0, 3))
    if len(verts) < 4 or faces == 0:
        raise SubjectError(f"{path}: mesh has {len(verts)} vertices and {faces} faces; nothing to render")
    if not np.isfinite(verts).all():
        raise SubjectError(f"{path}: mesh has non-finite vertex coordinates (NaN or inf)")
    source = verts @ source_from_blender[:3, :3].T
    try:
        norm = canonical.normalization_for(source, up_axis=up)
    except ValueError as exc:
        raise SubjectError(f"{path}: {exc}") from None
    root = bpy.data.objects.new(f"avatex_subject_{sid}", None)
    bpy.context.scene.collection.objects.link(root)
    root.matrix_world = Matrix((_B @ norm.matrix() @ source_from_blender).tolist())
    for ob in objects:
        if ob.parent is None:
            ob.parent = root
            ob.matrix_parent_inverse = Matrix.Identity(4)
    bpy.context.view_layer.update()
    return Subject(sid, path, objects, meshes, root, norm, source_from_blender, len(verts), faces,
                   norm.apply(source).astype(np.float32), repairs)


# --------------------------------------------------------------------------------------------------
# GT mesh export


def _image_array(image) -> np.ndarray:
    """(H, W, 4) float sRGB-encoded pixels, row 0 at the bottom (Blender's order)."""
    w, h = image.size
    if w == 0 or h == 0:
        raise SubjectError(f"texture {image.name!r} could not be loaded (file missing?)")
    px = np.empty(w * h * image.channels, dtype=np.float32)
    image.pixels.foreach_get(px)
    px = px.reshape(h, w, image.channels)
    if image.channels < 4:
        px = np.concatenate([px, np.ones((h, w, 4 - image.channels), np.float32)], axis=2)
    if image.is_float:
        px[..., :3] = linear_to_srgb(np.clip(px[..., :3], 0.0, None))
    return np.clip(px, 0.0, 1.0)


def _encode_image(image, multiply=(1.0, 1.0, 1.0)) -> tuple[str, bytes]:
    """The texture as a file: its own bytes when it is a PNG/JPEG, else re-encoded to PNG.

    A colour factor (glTF baseColorFactor) is multiplied in linear space, as the shader does.
    """
    if image.source == "TILED":
        raise SubjectError(f"texture {image.name!r} is a UDIM tile set; the GT export needs single images")
    if not np.allclose(multiply, 1.0):
        px = _image_array(image)
        px[..., :3] = linear_to_srgb(srgb_to_linear(px[..., :3]) * np.asarray(multiply))
        return ".png", encode_png(np.rint(np.clip(px[::-1], 0, 1) * 255.0).astype(np.uint8))
    fmt = image.file_format
    if image.packed_file is not None and fmt in ("PNG", "JPEG"):
        return (".png" if fmt == "PNG" else ".jpg"), bytes(image.packed_file.data)
    filepath = bpy.path.abspath(image.filepath_raw or image.filepath) if image.filepath else ""
    if filepath and os.path.isfile(filepath) and Path(filepath).suffix.lower() in (".png", ".jpg", ".jpeg"):
        return Path(filepath).suffix.lower(), Path(filepath).read_bytes()
    px = _image_array(image)
    return ".png", encode_png(np.rint(px[::-1] * 255.0).astype(np.uint8))


def _sample(image_px: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Nearest-texel sRGB colours (M, 3) of bottom-up pixels at UVs (wrapping)."""
    h, w = image_px.shape[:2]
    x = np.clip((np.mod(uv[:, 0], 1.0) * w).astype(np.int64), 0, w - 1)
    y = np.clip((np.mod(uv[:, 1], 1.0) * h).astype(np.int64), 0, h - 1)
    return image_px[y, x, :3]


@dataclass
class _Part:
    vertices: np.ndarray
    tris: np.ndarray  # vertex index per corner (T, 3)
    loops: np.ndarray  # loop index per corner (T, 3)
    material: list  # per-triangle material (bpy Material or None)
    mesh: object
    ob_eval: object


def _parts(subject: Subject) -> list[_Part]:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    parts = []
    for ob in subject.meshes:
        ob_eval = ob.evaluated_get(depsgraph)
        mesh = ob_eval.to_mesh()
        mesh.calc_loop_triangles()
        n_v, n_t = len(mesh.vertices), len(mesh.loop_triangles)
        co = np.empty(n_v * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        m = np.array(ob_eval.matrix_world, dtype=np.float64)
        world = co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        canon = world @ _B[:3, :3]  # B is a rotation: canonical = B^T world
        tris = np.empty(n_t * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("vertices", tris)
        loops = np.empty(n_t * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("loops", loops)
        mat_index = np.empty(n_t, dtype=np.int32)
        mesh.loop_triangles.foreach_get("material_index", mat_index)
        slots = [s.material for s in ob_eval.material_slots] or [None]
        mats = [slots[min(i, len(slots) - 1)] for i in mat_index.tolist()]
        # Mirrored (negative-scale) objects flip the winding; keep faces outward.
        tris = tris.reshape(-1, 3)
        loops = loops.reshape(-1, 3)
        if np.linalg.det(m[:3, :3]) < 0:
            tris = tris[:, ::-1].copy()
            loops = loops[:, ::-1].copy()
        parts.append(_Part(canon, tris, loops, mats, mesh, ob_eval))
    return parts


def _uv_layer(mesh, name: str):
    if name and name in mesh.uv_layers:
        return mesh.uv_layers[name]
    for layer in mesh.uv_layers:
        if layer.active_render:
            return layer
    return mesh.uv_layers.active


def _corner_uv(mesh, name: str, loops: np.ndarray) -> np.ndarray | None:
    layer = _uv_layer(mesh, name)
    if layer is None:
        return None
    uv = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    layer.data.foreach_get("uv", uv)
    return uv.reshape(-1, 2)[loops]


def _attribute_srgb(mesh, name: str) -> tuple[np.ndarray, str] | None:
    attr = mesh.color_attributes.get(name) if name else None
    if attr is None:
        return None
    values = np.empty(len(attr.data) * 4, dtype=np.float32)
    attr.data.foreach_get("color_srgb", values)
    return values.reshape(-1, 4)[:, :3], attr.domain


def extract_gt(subject: Subject, rig: materials_mod.MaterialRig) -> GTMesh:
    """The subject's normalised mesh and colours, as rendered (after materials.prepare)."""
    parts = _parts(subject)
    try:
        sources = {}
        for part in parts:
            for mat in set(part.material):
                if mat is not None and mat.name in rig.sources:
                    sources[mat.name] = rig.sources[mat.name]
        notes = sorted({f"material {name!r}: GT colour approximates a mixed colour node setup"
                        for name, s in sources.items() if s.approximate})
        textured = bool(sources) and all(s.kind in ("image", "constant") for s in sources.values()) and \
            any(s.kind == "image" for s in sources.values())
        offsets = np.cumsum([0] + [len(p.vertices) for p in parts])
        vertices = np.concatenate([p.vertices for p in parts]).astype(np.float32)
        faces = np.concatenate([p.tris + o for p, o in zip(parts, offsets, strict=False)])
        if textured:
            return _textured(parts, sources, vertices, faces, notes)
        return _vertex_colored(parts, sources, vertices, faces, notes)
    finally:
        for part in parts:
            part.ob_eval.to_mesh_clear()


def _textured(parts, sources, vertices, faces, notes) -> GTMesh:
    texture_keys: list[str] = []
    textures: list[tuple[str, bytes]] = []
    corner_uv, face_mat = [], []
    for part in parts:
        n_t = len(part.tris)
        uv = np.zeros((n_t, 3, 2), dtype=np.float32)
        fm = np.zeros(n_t, dtype=np.int32)
        names = [m.name if m is not None else "" for m in part.material]
        for name in sorted(set(names)):
            sel = np.array([n == name for n in names])
            src = sources.get(name)
            if src is None or src.kind == "constant":
                rgb = np.asarray(src.constant if src else (0.8, 0.8, 0.8))
                key = "const:" + ",".join(f"{c:.4f}" for c in rgb)
                if key not in texture_keys:
                    srgb = np.rint(np.clip(linear_to_srgb(rgb), 0, 1) * 255).astype(np.uint8)
                    textures.append((".png", encode_png(np.tile(srgb, (2, 2, 1)))))
                    texture_keys.append(key)
                uv[sel] = 0.5
            else:
                key = "image:" + src.image.name + ":" + ",".join(f"{c:.4f}" for c in src.multiply)
                if key not in texture_keys:
                    textures.append(_encode_image(src.image, src.multiply))
                    texture_keys.append(key)
                cuv = _corner_uv(part.mesh, src.uv_map, part.loops[sel])
                if cuv is None:
                    raise SubjectError(f"material {name!r} uses a texture but the mesh has no UV map")
                uv[sel] = cuv
            fm[sel] = texture_keys.index(key)
        corner_uv.append(uv)
        face_mat.append(fm)
    return GTMesh(vertices, faces, corner_uv=np.concatenate(corner_uv),
                  face_material=np.concatenate(face_mat), textures=textures, notes=notes)


def _vertex_colored(parts, sources, vertices, faces, notes) -> GTMesh:
    colors = []
    image_cache: dict[str, np.ndarray] = {}
    for part in parts:
        n_v = len(part.vertices)
        rgb = np.full((n_v, 3), 0.8, dtype=np.float32)
        names = [m.name if m is not None else "" for m in part.material]
        for name in sorted(set(names)):
            sel = np.array([n == name for n in names])
            src = sources.get(name)
            corners = part.tris[sel].ravel()
            if src is None or src.kind == "constant":
                const = np.asarray(src.constant if src else (0.8, 0.8, 0.8))
                rgb[corners] = np.clip(linear_to_srgb(const), 0, 1)
            elif src.kind == "attribute":
                got = _attribute_srgb(part.mesh, src.attribute)
                if got is None:
                    raise SubjectError(f"colour attribute {src.attribute!r} is missing on the mesh")
                values, domain = got
                if domain == "POINT":
                    rgb[corners] = values[corners]
                else:  # CORNER: average the corners of each vertex
                    acc = np.zeros((n_v, 3))
                    cnt = np.zeros(n_v)
                    loops = part.loops[sel].ravel()
                    np.add.at(acc, corners, values[loops])
                    np.add.at(cnt, corners, 1.0)
                    hit = cnt > 0
                    rgb[hit] = (acc[hit] / cnt[hit, None]).astype(np.float32)
            else:  # image: the texel under each corner's UV
                if src.image.name not in image_cache:
                    image_cache[src.image.name] = _image_array(src.image)
                cuv = _corner_uv(part.mesh, src.uv_map, part.loops[sel])
                if cuv is None:
                    raise SubjectError(f"material {name!r} uses a texture but the mesh has no UV map")
                texel = _sample(image_cache[src.image.name], cuv.reshape(-1, 2))
                if not np.allclose(src.multiply, 1.0):
                    texel = linear_to_srgb(srgb_to_linear(texel) * np.asarray(src.multiply))
                rgb[corners] = texel
        colors.append(rgb)
    srgb = np.rint(np.clip(np.concatenate(colors), 0.0, 1.0) * 255.0).astype(np.uint8)
    return GTMesh(vertices, faces, vertex_colors=srgb, notes=notes)

