"""Coloured triangle meshes: load what users bring, look up surface colours, write results.

One small structure, :class:`ColoredMesh`, covers both colour sources the project meets:

* per-vertex colours (2K2K PLY scans, PIFu reconstructions), and
* UV textures, possibly several (THuman OBJ + MTL, GLB avatars, multi-material OBJ), kept as a list of
  images with a per-face material index.

All colours are sRGB-encoded floats in [0, 1] (docs/architecture.md). Texture lookups are bilinear, and
surface colours are interpolated barycentrically, so GT colours at arbitrary surface points are well
defined for the metrics and the training samplers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avatex_core import mesh_hygiene
from avatex_core.atomic import atomic_path
from backend import triangles
from backend.errors import InputError

MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".off", ".stl")


@dataclass
class ColoredMesh:
    """A triangle mesh with sRGB colours from vertex colours or UV textures.

    Attributes:
        vertices: (N, 3) float64 positions.
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside.
        vertex_colors: (N, 3) float32 sRGB in [0, 1], or None.
        uv: (N, 2) float32 texture coordinates (origin bottom-left, as in OBJ/glTF after trimesh), or None.
        textures: list of (H, W, 3) uint8 sRGB images; empty without textures.
        face_material: (F,) int32 index into ``textures``; None when there are no textures.
        repairs: what :func:`load_mesh` repaired (avatex_core.mesh_hygiene sentences); empty when clean.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    textures: list[np.ndarray] = field(default_factory=list)
    face_material: np.ndarray | None = None
    repairs: list[str] = field(default_factory=list)

    @property
    def has_texture(self) -> bool:
        return bool(self.textures) and self.uv is not None

    @property
    def has_colors(self) -> bool:
        return self.vertex_colors is not None or self.has_texture

    def colors_at(self, face_index: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
        """sRGB colours (M, 3) at surface points given by face index and barycentric weights (M, 3).

        Textures win over vertex colours when both exist: a textured scan's vertex colours are usually a
        coarse preview.
        """
        face_index = np.asarray(face_index, dtype=np.int64)
        bary = np.asarray(barycentric, dtype=np.float64)
        corners = self.faces[face_index]  # (M, 3)
        if self.has_texture:
            uv = np.einsum("mk,mkj->mj", bary, self.uv[corners].astype(np.float64))
            out = np.empty((len(face_index), 3), dtype=np.float32)
            materials = (self.face_material[face_index] if self.face_material is not None
                         else np.zeros(len(face_index), dtype=np.int32))
            for m, image in enumerate(self.textures):
                sel = materials == m
                if sel.any():
                    out[sel] = sample_texture(image, uv[sel])
            return out
        if self.vertex_colors is not None:
            c = np.einsum("mk,mkj->mj", bary, self.vertex_colors[corners].astype(np.float64))
            return np.clip(c, 0.0, 1.0).astype(np.float32)
        raise InputError("mesh has neither vertex colours nor a texture")

    def per_vertex_colors(self) -> np.ndarray:
        """(N, 3) sRGB colour of every vertex: its own colour, or the texture at its UV."""
        if self.vertex_colors is not None and not self.has_texture:
            return self.vertex_colors
        if not self.has_texture:
            raise InputError("mesh has neither vertex colours nor a texture")
        out = np.zeros((len(self.vertices), 3), dtype=np.float32)
        materials = (self.face_material if self.face_material is not None
                     else np.zeros(len(self.faces), dtype=np.int32))
        # A vertex shared by faces of different materials takes the material of its last face.
        vertex_material = np.zeros(len(self.vertices), dtype=np.int32)
        vertex_material[self.faces.ravel()] = np.repeat(materials, 3)
        for m, image in enumerate(self.textures):
            sel = vertex_material == m
            if sel.any():
                out[sel] = sample_texture(image, self.uv[sel])
        return out


def sample_texture(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an (H, W, C) uint8 sRGB image at (M, 2) UVs; returns (M, 3) float32 in [0, 1].

    UV (0, 0) is the bottom-left corner of the image and (1, 1) the top-right; UVs outside [0, 1] wrap
    (OBJ and glTF repeat by default). Texel centres sit at (i + 0.5) / W.
    """
    h, w = image.shape[:2]
    uv = np.asarray(uv, dtype=np.float64)
    u = np.mod(uv[:, 0], 1.0) * w - 0.5
    v = (1.0 - np.mod(uv[:, 1], 1.0)) * h - 0.5
    x0 = np.floor(u).astype(np.int64)
    y0 = np.floor(v).astype(np.int64)
    fx = (u - x0)[:, None]
    fy = (v - y0)[:, None]
    x0c, x1c = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    y0c, y1c = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    img = image[..., :3].astype(np.float32) / 255.0
    top = img[y0c, x0c] * (1 - fx) + img[y0c, x1c] * fx
    bottom = img[y1c, x0c] * (1 - fx) + img[y1c, x1c] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def sample_surface(mesh: ColoredMesh, count: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-uniform random surface points: (points (M, 3), face index (M,), barycentric (M, 3))."""
    tri = mesh.vertices[mesh.faces]
    areas = triangles.areas(mesh.vertices, mesh.faces)
    total = areas.sum()
    if not total > 0:
        raise InputError("mesh has no surface area")
    cdf = np.cumsum(areas)
    face_index = np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right")
    face_index = np.minimum(face_index, len(areas) - 1)
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    bary = np.stack([1.0 - s, s * (1.0 - r2), s * r2], axis=1)
    points = np.einsum("mk,mkj->mj", bary, tri[face_index])
    return points, face_index, bary


def load_mesh(path: str | Path, *, keep_vertex_order: bool = False) -> ColoredMesh:
    """Read PLY / OBJ(+MTL+textures) / GLB / glTF into a :class:`ColoredMesh`.

    Vertex order is kept (``process=False``), so per-vertex arrays computed on the file line up with it,
    except that textured OBJs get one vertex per distinct (position, UV) pair: a UV seam needs two.
    Multi-geometry files (multi-material OBJ, GLB scenes) are concatenated with their scene transforms
    applied. Every geometry is repaired by the decisions of :mod:`avatex_core.mesh_hygiene` (the same
    ones the renderer takes), listed in ``repairs``; a geometry with nothing usable left is dropped, and
    a file with nothing usable at all is an :class:`InputError` naming it. ``keep_vertex_order`` keeps
    every vertex (stray ones too), so that per-vertex arrays written for this file (``avatex evaluate
    --out``) line up with the file read by Blender's importer; only faces are removed or flipped then.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"mesh file not found: {path}")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise InputError(f"unsupported mesh format {path.suffix!r} ({path}); "
                         f"use one of {', '.join(MESH_SUFFIXES)}")
    if path.suffix.lower() == ".ply":
        fast = _read_simple_ply(path)
        if fast is not None:
            return _repaired_arrays(path, fast, keep_vertex_order)
    import trimesh

    try:
        loaded = trimesh.load(path, process=False)
    except Exception as exc:  # trimesh raises many types on malformed files
        raise InputError(f"could not read mesh {path}: {exc}") from exc
    if isinstance(loaded, trimesh.Scene):
        geometries = [g for g in loaded.dump(concatenate=False) if isinstance(g, trimesh.Trimesh)]
    elif isinstance(loaded, trimesh.Trimesh):
        geometries = [loaded]
    else:
        geometries = []
    geometries = [g for g in geometries if len(g.faces) > 0]
    if not geometries:
        raise InputError(f"{path} holds no triangle mesh (a point cloud or an empty file?)")
    reports = [_repair(g, keep_vertex_order) for g in geometries]
    usable = [g for g, r in zip(geometries, reports, strict=True) if not r.error]
    if not usable:
        raise InputError(f"{path}: mesh cannot be repaired: {reports[0].error}")
    counts = mesh_hygiene.merge_counts([r for r in reports if not r.error])
    merged = _merge([_from_trimesh(g) for g in usable])
    kept = 0
    if keep_vertex_order:
        kept = counts.pop("unreferenced_vertices", 0) + counts.pop("non_finite_vertices", 0)
    repairs = mesh_hygiene.describe(counts)
    if kept:
        repairs.append(f"kept {kept} unreferenced vertex(es) (vertex order kept)")
    merged.repairs = repairs + [f"dropped a part: {r.error}" for r in reports if r.error]
    return merged


def _repaired_arrays(path: Path, mesh: ColoredMesh, keep_vertex_order: bool) -> ColoredMesh:
    """:func:`_repair`'s decisions applied to a mesh read without trimesh (same result, by indexing)."""
    report = mesh_hygiene.inspect(mesh.vertices, mesh.faces)
    if report.error:
        raise InputError(f"{path}: mesh cannot be repaired: {report.error}")
    counts = dict(report.counts)
    if counts:
        faces = mesh.faces.copy()
        faces[report.flip_faces] = faces[report.flip_faces][:, [0, 2, 1]]
        mesh.faces = faces[report.keep_faces]
        if not keep_vertex_order:
            used = np.zeros(len(mesh.vertices), dtype=bool)
            used[mesh.faces.ravel()] = True
            remap = np.cumsum(used) - 1
            mesh.faces = remap[mesh.faces]
            mesh.vertices = mesh.vertices[used]
            if mesh.vertex_colors is not None:
                mesh.vertex_colors = mesh.vertex_colors[used]
    kept = 0
    if keep_vertex_order:
        kept = counts.pop("unreferenced_vertices", 0) + counts.pop("non_finite_vertices", 0)
    mesh.repairs = mesh_hygiene.describe(counts)
    if kept:
        mesh.repairs.append(f"kept {kept} unreferenced vertex(es) (vertex order kept)")
    return mesh


_PLY_SCALARS = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
                "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
                "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _read_simple_ply(path: Path) -> ColoredMesh | None:
    """The common binary PLY (``save_mesh``'s, MeshLab's, Blender's) read with numpy alone, else None.

    Only little-endian files with one ``vertex`` element (scalar properties, uchar colours if any) and
    one all-triangle ``face`` element are read here; anything else (ASCII, quads, extra elements, a
    truncated file) returns None and goes to trimesh, which also gives the errors. Importing trimesh
    costs more than reading and repairing a 50k-face mesh, which matters to a one-shot ``avatex evaluate``.
    """
    with open(path, "rb") as fh:
        head = fh.read(4096)
        end = head.find(b"end_header\n")
        if not head.startswith(b"ply\n") or end < 0:
            return None
        try:
            elements = _ply_elements(head[:end].decode("ascii"))
        except (UnicodeDecodeError, ValueError, IndexError):
            return None
        if elements is None or [e[0] for e in elements] != ["vertex", "face"]:
            return None
        (_, n_vertices, vprops), (_, n_faces, fprops) = elements
        names = [p[-1] for p in vprops]
        colours = [p[0] for p in vprops if p[-1] in ("red", "green", "blue", "alpha")]
        face = fprops[0] if len(fprops) == 1 else []
        if (any(len(p) != 2 or p[0] not in _PLY_SCALARS for p in vprops) or not {"x", "y", "z"} <= set(names)
                or any(_PLY_SCALARS[c] != "u1" for c in colours) or len(face) != 4 or face[0] != "list"
                or face[1] not in _PLY_SCALARS or face[2] not in _PLY_SCALARS
                or face[3] not in ("vertex_indices", "vertex_index")):
            return None
        vdtype = np.dtype([(p[1], "<" + _PLY_SCALARS[p[0]]) for p in vprops])
        fdtype = np.dtype([("n", "<" + _PLY_SCALARS[face[1]]), ("i", "<" + _PLY_SCALARS[face[2]], (3,))])
        fh.seek(end + len(b"end_header\n"))
        data = fh.read()
    if n_faces == 0 or len(data) != n_vertices * vdtype.itemsize + n_faces * fdtype.itemsize:
        return None
    vrec = np.frombuffer(data, dtype=vdtype, count=n_vertices)
    frec = np.frombuffer(data, dtype=fdtype, count=n_faces, offset=n_vertices * vdtype.itemsize)
    if not (frec["n"] == 3).all():
        return None
    mesh = ColoredMesh(vertices=np.stack([vrec[a].astype(np.float64) for a in "xyz"], axis=1),
                       faces=frec["i"].astype(np.int64))
    if {"red", "green", "blue"} <= set(names):
        rgb = np.stack([vrec[c] for c in ("red", "green", "blue")], axis=1)
        mesh.vertex_colors = rgb.astype(np.float32) / 255.0
    return mesh


def _ply_elements(header: str) -> list[tuple[str, int, list[list[str]]]] | None:
    """(name, count, property words) of each element of a binary little-endian PLY header, else None."""
    elements: list[tuple[str, int, list[list[str]]]] = []
    for line in header.splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and words[1:] != ["binary_little_endian", "1.0"]:
            return None
        if words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            elements[-1][2].append(words[1:])
    return elements


def _repair(mesh, keep_vertex_order: bool = False) -> mesh_hygiene.Hygiene:
    """Apply the shared hygiene decisions with trimesh's own operations (they keep UVs and colours)."""
    report = mesh_hygiene.inspect(np.asarray(mesh.vertices), np.asarray(mesh.faces))
    if report.error or not report.counts:
        return report
    if report.flip_faces.any():
        faces = np.asarray(mesh.faces).copy()
        faces[report.flip_faces] = faces[report.flip_faces][:, [0, 2, 1]]
        mesh.faces = faces
    mesh.update_faces(report.keep_faces)
    if not keep_vertex_order:
        mesh.remove_unreferenced_vertices()
    return report


def _from_trimesh(mesh) -> ColoredMesh:
    import trimesh

    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    out = ColoredMesh(vertices=vertices, faces=faces)
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.TextureVisuals):
        image, factor = _material_image(visual.material)
        uv = getattr(visual, "uv", None)
        if image is not None and uv is not None and len(uv) == len(vertices):
            out.uv = np.asarray(uv, dtype=np.float32)
            if factor is not None and not np.allclose(factor, 1.0):
                image = np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)
            out.textures = [image]
            out.face_material = np.zeros(len(faces), dtype=np.int32)
        elif factor is not None:
            out.vertex_colors = np.tile((factor * np.ones(3)).astype(np.float32), (len(vertices), 1))
    elif isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "vertex":
        out.vertex_colors = np.asarray(visual.vertex_colors[:, :3], dtype=np.float32) / 255.0
    elif isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "face":
        # Spread face colours to vertices by averaging: good enough for audits of flat-coloured meshes.
        fc = np.asarray(visual.face_colors[:, :3], dtype=np.float64) / 255.0
        acc = np.zeros((len(vertices), 3))
        cnt = np.zeros(len(vertices))
        np.add.at(acc, faces.ravel(), np.repeat(fc, 3, axis=0))
        np.add.at(cnt, faces.ravel(), 1.0)
        out.vertex_colors = (acc / np.maximum(cnt, 1)[:, None]).astype(np.float32)
    return out


def _material_image(material) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(texture as (H, W, 3) uint8, colour factor (3,) in [0, 1]) of a trimesh material."""
    image = getattr(material, "image", None)
    factor = None
    if image is None:
        image = getattr(material, "baseColorTexture", None)
        base = getattr(material, "baseColorFactor", None)
        if base is not None:
            base = np.asarray(base, dtype=np.float64)[:3]
            factor = base / 255.0 if base.max() > 1.0 else base
    if image is None:
        diffuse = getattr(material, "diffuse", None)
        if diffuse is not None and factor is None:
            factor = np.asarray(diffuse, dtype=np.float64)[:3] / 255.0
        return None, factor
    return np.asarray(image.convert("RGB"), dtype=np.uint8), factor


def _merge(parts: list[ColoredMesh]) -> ColoredMesh:
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    vertices = np.concatenate([p.vertices for p in parts])
    faces = np.concatenate([p.faces + o for p, o in zip(parts, offsets, strict=True)])
    out = ColoredMesh(vertices=vertices, faces=faces)
    if all(p.has_texture for p in parts):
        out.uv = np.concatenate([p.uv for p in parts])
        textures: list[np.ndarray] = []
        materials = []
        for p in parts:
            materials.append(p.face_material + len(textures))
            textures.extend(p.textures)
        out.textures = textures
        out.face_material = np.concatenate(materials).astype(np.int32)
    elif all(p.has_colors for p in parts):
        out.vertex_colors = np.concatenate([p.per_vertex_colors() for p in parts])
    return out


def save_mesh(path: str | Path, vertices: np.ndarray, faces: np.ndarray,
              colors: np.ndarray | None = None) -> None:
    """Write a mesh with optional per-vertex sRGB colours ((N, 3) floats in [0, 1] or uint8) atomically.

    ``.ply`` is binary little-endian with uchar red/green/blue (what MeshLab, Blender and trimesh read);
    ``.obj`` uses the common ``v x y z r g b`` extension. Faces are written as given: callers pass
    outward (counter-clockwise) winding.
    """
    path = Path(path)
    vertices = np.ascontiguousarray(vertices, dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    rgb = None if colors is None else _to_uint8(colors)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".ply":
            _write_ply(tmp, vertices, faces, rgb)
        elif suffix == ".obj":
            _write_obj(tmp, vertices, faces, rgb)
        else:
            raise InputError(f"can only write .ply or .obj meshes, not {path.suffix!r}")


def _to_uint8(colors: np.ndarray) -> np.ndarray:
    colors = np.asarray(colors)
    if colors.dtype == np.uint8:
        return colors[:, :3]
    return np.clip(np.rint(colors[:, :3].astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray, rgb: np.ndarray | None) -> None:
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}",
              "property float x", "property float y", "property float z"]
    vdtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if rgb is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        vdtype += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    vrec = np.empty(len(vertices), dtype=vdtype)
    vrec["x"], vrec["y"], vrec["z"] = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    if rgb is not None:
        vrec["red"], vrec["green"], vrec["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    frec = np.empty(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    frec["n"] = 3
    frec["i"] = faces
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(vrec.tobytes())
        fh.write(frec.tobytes())


def _write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray, rgb: np.ndarray | None) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write("# avatex\n")
        if rgb is None:
            np.savetxt(fh, vertices, fmt="v %.6f %.6f %.6f")
        else:
            data = np.concatenate([vertices.astype(np.float64), rgb.astype(np.float64) / 255.0], axis=1)
            np.savetxt(fh, data, fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
        np.savetxt(fh, faces.astype(np.int64) + 1, fmt="f %d %d %d")
