"""Meshes in and out of Blender through the attribute buffers (blender.md §5).

Writing ``position`` and ``.corner_vert`` with one ``foreach_set`` each takes milliseconds for a
million vertices, where ``from_pydata`` takes seconds. All buffers are C-contiguous float32 / int32:
with any other dtype ``foreach_set`` falls back to a per-item conversion hundreds of times slower.

Two ways to build:

* :func:`import_mesh` does everything at once (scripts, headless rendering, the benchmark). It lets
  ``Mesh.update()`` derive the edges, which is the fastest total but one ~0.5 s call for 2 M triangles.
* :class:`StagedImport` does the same in small steps for the add-on's timer, so that Blender stays
  responsive while a large result arrives: the edges are computed in numpy in vertex-range chunks and
  written together with the faces, which leaves ``update()`` nothing to derive. Each step costs at most
  a few tens of milliseconds per million elements.

Both fall back to the ``vertices``/``edges``/``loops`` collections when the internal attribute names
(``position``, ``.corner_vert``, ``.edge_verts``, ``.corner_edge`` - present in 4.2 to 5.0) are missing.

Reading back (:func:`read_positions`, :func:`read_triangles`, :func:`read_point_colors`, ...) serves the
audit, which sends a scene object's geometry and colours to the backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping

import bpy
import numpy as np

from avatex_core.color import linear_to_srgb, rgba, srgb_to_linear

COLOR_ATTRIBUTE = "Col"
"""Name of the colour attribute a reconstruction gets (the name Blender's PLY importer uses)."""

CORNERS_PER_EDGE_CHUNK = 500_000
"""Corners handled per edge-derivation step of a staged import (~25-40 ms here)."""


# --------------------------------------------------------------------------------------------- checks
def as_vertices(vertices: np.ndarray) -> np.ndarray:
    """(N, 3) float32 C-contiguous, or ValueError naming the problem."""
    v = np.ascontiguousarray(vertices, dtype=np.float32)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), got {tuple(v.shape)}")
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or infinite coordinates")
    return v


def as_triangles(faces: np.ndarray, vertex_count: int) -> np.ndarray:
    """(F, 3) int32 C-contiguous with indices in range, or ValueError naming the problem."""
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tuple(f.shape)}")
    if f.size and (f.min() < 0 or f.max() >= vertex_count):
        raise ValueError(f"face indices must lie in [0, {vertex_count}), got [{f.min()}, {f.max()}]")
    return np.ascontiguousarray(f, dtype=np.int32)


def _per_vertex(values: np.ndarray, count: int, width: int, what: str) -> np.ndarray:
    a = np.ascontiguousarray(values, dtype=np.float32)
    expected = (count,) if width == 1 else (count, width)
    if a.shape != expected:
        raise ValueError(f"{what} must have shape {expected}, got {tuple(a.shape)}")
    return a


# ----------------------------------------------------------------------------------------- geometry
def _allocate(name: str, n_verts: int, n_tris: int, n_edges: int = 0) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(n_verts)
    if n_edges:
        mesh.edges.add(n_edges)
    mesh.loops.add(3 * n_tris)
    mesh.polygons.add(n_tris)
    return mesh


def _set_positions(mesh: bpy.types.Mesh, vertices: np.ndarray) -> None:
    if "position" in mesh.attributes:
        mesh.attributes["position"].data.foreach_set("vector", vertices.ravel())
    else:
        mesh.vertices.foreach_set("co", vertices.ravel())


def _set_corner_verts(mesh: bpy.types.Mesh, triangles: np.ndarray) -> None:
    if ".corner_vert" in mesh.attributes:
        mesh.attributes[".corner_vert"].data.foreach_set("value", triangles.ravel())
    else:
        mesh.loops.foreach_set("vertex_index", triangles.ravel())


def _set_loop_starts(mesh: bpy.types.Mesh, n_tris: int) -> None:
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * n_tris, 3, dtype=np.int32))


def _set_edges(mesh: bpy.types.Mesh, edge_verts: np.ndarray, corner_edge: np.ndarray) -> None:
    if ".edge_verts" in mesh.attributes and ".corner_edge" in mesh.attributes:
        mesh.attributes[".edge_verts"].data.foreach_set("value", edge_verts.ravel())
        mesh.attributes[".corner_edge"].data.foreach_set("value", corner_edge)
    else:
        mesh.edges.foreach_set("vertices", edge_verts.ravel())
        mesh.loops.foreach_set("edge_index", corner_edge)


def build_mesh(name: str, vertices: np.ndarray, faces: np.ndarray) -> bpy.types.Mesh:
    """A new triangle mesh datablock from (N, 3) vertices and (F, 3) faces, built in one go."""
    v = as_vertices(vertices)
    f = as_triangles(faces, len(v))
    mesh = _allocate(name, len(v), len(f))
    _set_positions(mesh, v)
    _set_corner_verts(mesh, f)
    _set_loop_starts(mesh, len(f))
    mesh.update()  # derives the edges
    return mesh


# --------------------------------------------------------------------------------------- attributes
def set_point_colors(mesh: bpy.types.Mesh, name: str, srgb: np.ndarray, *, active: bool = True,
                     render: bool = True) -> bpy.types.Attribute:
    """Write (N, 3) sRGB colours as a FLOAT_COLOR POINT attribute (stored scene-linear, docs/architecture.md).

    FLOAT_COLOR keeps full precision, so colours read back through ``color_srgb`` (what the audit sends)
    are the backend's values, not 8-bit roundings. ``active`` makes it the colour Solid mode shows;
    ``render`` makes it the one a Color Attribute node with no name and exporters use.
    """
    colors = _per_vertex(srgb, len(mesh.vertices), 3, f"colour attribute {name!r}")
    return set_point_colors_linear(mesh, name, rgba(srgb_to_linear(colors)), active=active, render=render)


def set_point_colors_linear(mesh: bpy.types.Mesh, name: str, linear_rgba: np.ndarray, *,
                            active: bool = True, render: bool = True) -> bpy.types.Attribute:
    """Write (N, 4) scene-linear RGBA as a FLOAT_COLOR POINT attribute, replacing one of that name."""
    data = _per_vertex(linear_rgba, len(mesh.vertices), 4, f"colour attribute {name!r}")
    attr = mesh.color_attributes.get(name)
    if attr is not None and (attr.data_type != "FLOAT_COLOR" or attr.domain != "POINT"):
        mesh.color_attributes.remove(attr)
        attr = None
    if attr is None:
        attr = mesh.color_attributes.new(name, "FLOAT_COLOR", "POINT")
    attr.data.foreach_set("color", data.ravel())
    # By name, not index: the internal order differs from creation order (blender.md §5).
    if active:
        mesh.color_attributes.active_color_name = name
    if render:
        mesh.color_attributes.default_color_name = name
    return attr


def set_point_floats(mesh: bpy.types.Mesh, name: str, values: np.ndarray) -> bpy.types.Attribute:
    """Write (N,) values as a FLOAT POINT attribute, replacing one of that name."""
    data = _per_vertex(values, len(mesh.vertices), 1, f"attribute {name!r}")
    attr = mesh.attributes.get(name)
    if attr is not None and (attr.data_type != "FLOAT" or attr.domain != "POINT"):
        mesh.attributes.remove(attr)
        attr = None
    if attr is None:
        attr = mesh.attributes.new(name, "FLOAT", "POINT")
    attr.data.foreach_set("value", data)
    return attr


def import_mesh(name: str, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None, *,
                floats: Mapping[str, np.ndarray] | None = None, color_name: str = COLOR_ATTRIBUTE,
                collection: bpy.types.Collection | None = None) -> bpy.types.Object:
    """Build a mesh object with optional sRGB vertex colours and float POINT attributes, in one go.

    The object is linked to ``collection`` (default: the scene's) at the origin; callers place it.
    """
    mesh = build_mesh(name, vertices, faces)
    if colors is not None:
        set_point_colors(mesh, color_name, colors)
    for key, values in (floats or {}).items():
        set_point_floats(mesh, key, values)
    return _link_object(name, mesh, collection)


def _link_object(name: str, mesh: bpy.types.Mesh,
                 collection: bpy.types.Collection | None) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, mesh)
    (collection or bpy.context.scene.collection).objects.link(obj)
    return obj


# ------------------------------------------------------------------------------------ staged import
def edge_keys(triangles: np.ndarray, vertex_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per corner, the (smaller, larger) vertex ids of the edge it starts: ``(lo, hi)``, int32 each.

    Corner ``c`` of triangle ``t`` starts edge ``(tri[t, c], tri[t, (c + 1) % 3])`` - Blender's
    ``.corner_edge`` convention.
    """
    a = triangles.ravel()
    b = triangles[:, (1, 2, 0)].ravel()
    return np.minimum(a, b), np.maximum(a, b)


def edge_chunk(lo: np.ndarray, hi: np.ndarray, vertex_count: int, first: int, last: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique edges whose smaller vertex id lies in ``[first, last)``.

    Returns ``(corner_ids, unique_keys, inverse)`` with key = lo * vertex_count + hi. Splitting the corners
    by the edge's smaller vertex id makes chunks independent, and concatenating the chunks' sorted unique
    keys in order gives exactly the globally sorted unique edge list - the same result as one big
    ``np.unique``, in steps of bounded cost.
    """
    corner_ids = np.flatnonzero((lo >= first) & (lo < last))
    keys = lo[corner_ids].astype(np.int64) * vertex_count + hi[corner_ids]
    unique, inverse = np.unique(keys, return_inverse=True)
    return corner_ids, unique, inverse.reshape(-1)


class StagedImport:
    """Build a coloured mesh object in steps that each take a bounded time (for the add-on's timer).

    Call :meth:`step` until it returns False (or iterate :meth:`steps`); ``stage`` names what the last
    step did and ``fraction`` says how far it is. ``obj`` is the finished object. Nothing is added to
    ``bpy.data`` before the "allocate" stage, so cancelling during the edge derivation leaves no trace;
    :meth:`discard` removes a half-built mesh.
    """

    def __init__(self, name: str, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None,
                 *, floats: Mapping[str, np.ndarray] | None = None, color_name: str = COLOR_ATTRIBUTE,
                 collection: bpy.types.Collection | None = None,
                 finish: Callable[[bpy.types.Object], None] | None = None,
                 corners_per_chunk: int = CORNERS_PER_EDGE_CHUNK):
        self.name = name
        self.vertices = as_vertices(vertices)
        self.triangles = as_triangles(faces, len(self.vertices))
        n = len(self.vertices)
        self.colors = None if colors is None else _per_vertex(colors, n, 3, "colours")
        self.floats = {k: _per_vertex(v, n, 1, f"attribute {k!r}") for k, v in (floats or {}).items()}
        self.color_name = color_name
        self.collection = collection
        self.finish = finish
        self.corners_per_chunk = corners_per_chunk
        self.mesh: bpy.types.Mesh | None = None
        self.obj: bpy.types.Object | None = None
        self.stage = "pending"
        self.fraction = 0.0
        self._iter = self._run()
        self._total_steps = (math.ceil(3 * len(self.triangles) / corners_per_chunk) + 5
                             + (2 if self.colors is not None else 0) + len(self.floats))
        self._done_steps = 0

    def step(self) -> bool:
        """Run one bounded step; False once the object is complete."""
        try:
            self.stage = next(self._iter)
        except StopIteration:
            self.stage, self.fraction = "done", 1.0
            return False
        self._done_steps += 1
        self.fraction = min(1.0, self._done_steps / self._total_steps)
        return True

    def steps(self) -> Iterator[str]:
        while self.step():
            yield self.stage

    def run_to_end(self) -> bpy.types.Object:
        for _ in self.steps():
            pass
        return self.obj

    def discard(self) -> None:
        """Remove whatever this import already added to ``bpy.data`` (used when a job is cancelled)."""
        if self.obj is not None and self.obj.name in bpy.data.objects:
            bpy.data.objects.remove(self.obj)
        if self.mesh is not None and self.mesh.name in bpy.data.meshes:
            bpy.data.meshes.remove(self.mesh)
        self.obj = self.mesh = None
        self._iter = iter(())

    def _run(self) -> Iterator[str]:
        v, f = self.vertices, self.triangles
        n, n_corners = len(v), 3 * len(f)
        lo, hi = edge_keys(f, n)
        yield "edges"
        chunks = max(1, math.ceil(n_corners / self.corners_per_chunk))
        bounds = np.linspace(0, n, chunks + 1).astype(np.int64)
        corner_edge = np.empty(n_corners, dtype=np.int32)
        edge_parts: list[np.ndarray] = []
        offset = 0
        for k in range(chunks):
            corner_ids, unique, inverse = edge_chunk(lo, hi, n, int(bounds[k]), int(bounds[k + 1]))
            corner_edge[corner_ids] = inverse + offset
            offset += len(unique)
            edge_parts.append(unique)
            yield "edges"
        del lo, hi
        keys = np.concatenate(edge_parts) if edge_parts else np.empty(0, np.int64)
        edge_verts = np.empty((len(keys), 2), dtype=np.int32)
        edge_verts[:, 0] = keys // max(n, 1)
        edge_verts[:, 1] = keys % max(n, 1)
        del edge_parts, keys

        self.mesh = _allocate(self.name, n, len(f), len(edge_verts))
        yield "allocate"
        _set_positions(self.mesh, v)
        _set_corner_verts(self.mesh, f)
        _set_edges(self.mesh, edge_verts, corner_edge)
        yield "geometry"
        _set_loop_starts(self.mesh, len(f))
        self.mesh.update()  # edges already exist: nothing left to derive
        yield "faces"
        if self.colors is not None:
            linear = rgba(srgb_to_linear(self.colors))
            yield "colours"
            set_point_colors_linear(self.mesh, self.color_name, linear)
            yield "colour attribute"
        for key, values in self.floats.items():
            set_point_floats(self.mesh, key, values)
            yield f"attribute {key}"
        self.obj = _link_object(self.name, self.mesh, self.collection)
        if self.finish is not None:
            self.finish(self.obj)
        yield "object"


# ---------------------------------------------------------------------------------------- read back
def read_positions(mesh: bpy.types.Mesh) -> np.ndarray:
    """(N, 3) float32 vertex positions in the mesh's own (object) space."""
    out = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", out)
    return out.reshape(-1, 3)


def read_triangles(mesh: bpy.types.Mesh) -> np.ndarray:
    """(F, 3) int32 triangles (n-gons triangulated the way Blender draws them)."""
    mesh.calc_loop_triangles()
    out = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
    mesh.loop_triangles.foreach_get("vertices", out)
    return out.reshape(-1, 3)


def corner_verts(mesh: bpy.types.Mesh) -> np.ndarray:
    out = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", out)
    return out


def corners_to_points(mesh: bpy.types.Mesh, values: np.ndarray) -> np.ndarray:
    """Average per-corner values (C, K) onto the vertices -> (N, K) float32 (0 for unused vertices)."""
    cv = corner_verts(mesh)
    n = len(mesh.vertices)
    counts = np.bincount(cv, minlength=n).astype(np.float64)
    out = np.stack([np.bincount(cv, weights=values[:, k], minlength=n) for k in range(values.shape[1])], -1)
    return (out / np.maximum(counts, 1.0)[:, None]).astype(np.float32)


def set_uv(mesh: bpy.types.Mesh, uv: np.ndarray, name: str = "UVMap") -> bpy.types.MeshUVLoopLayer:
    """A UV map from per-vertex UVs (N, 2), origin bottom-left (Blender's and OBJ's convention)."""
    uv = _per_vertex(uv, len(mesh.vertices), 2, "UVs")
    layer = mesh.uv_layers.get(name) or mesh.uv_layers.new(name=name)
    layer.data.foreach_set("uv", np.ascontiguousarray(uv[corner_verts(mesh)], dtype=np.float32).ravel())
    return layer


def image_from_rgb(name: str, rgb: np.ndarray) -> bpy.types.Image:
    """A packed sRGB image datablock from (H, W, 3) uint8 pixels, row 0 at the top (as PNGs store them)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"texture must be uint8 (H, W, 3), got {rgb.dtype} {list(rgb.shape)}")
    h, w = rgb.shape[:2]
    image = bpy.data.images.new(name, w, h, alpha=False)
    pixels = np.ones((h, w, 4), dtype=np.float32)
    pixels[..., :3] = rgb[::-1] / np.float32(255.0)    # Blender's rows run bottom-up
    image.pixels.foreach_set(pixels.ravel())
    image.pack()
    return image


def read_point_colors(mesh: bpy.types.Mesh, name: str | None = None) -> np.ndarray | None:
    """(N, 3) float32 sRGB colours of a colour attribute (default: the render colour, else the active).

    Works for FLOAT_COLOR and BYTE_COLOR on POINT or CORNER domains (corners are averaged per vertex);
    None when the mesh has no colour attribute.
    """
    attrs = mesh.color_attributes
    if name is None:
        name = attrs.default_color_name or attrs.active_color_name
    attr = attrs.get(name) if name else None
    if attr is None:
        return None
    buf = np.empty(len(attr.data) * 4, dtype=np.float32)
    if attr.data_type == "FLOAT_COLOR":
        # Read the stored linear values and invert our own transfer function exactly; Blender's
        # ``color_srgb`` getter is accurate only to ~1e-4.
        attr.data.foreach_get("color", buf)
        rgb = linear_to_srgb(buf.reshape(-1, 4)[:, :3])
    else:
        attr.data.foreach_get("color_srgb", buf)
        rgb = buf.reshape(-1, 4)[:, :3]
    if attr.domain == "CORNER":
        rgb = corners_to_points(mesh, rgb)
    return np.ascontiguousarray(rgb, dtype=np.float32)


def read_point_floats(mesh: bpy.types.Mesh, name: str) -> np.ndarray | None:
    """(N,) float32 values of a FLOAT POINT attribute, or None when there is none of that name."""
    attr = mesh.attributes.get(name)
    if attr is None or attr.data_type != "FLOAT" or attr.domain != "POINT":
        return None
    out = np.empty(len(attr.data), dtype=np.float32)
    attr.data.foreach_get("value", out)
    return out


def read_selection(mesh: bpy.types.Mesh) -> np.ndarray:
    """(N,) bool: which vertices are selected (call ``obj.update_from_editmode()`` first in edit mode)."""
    out = np.empty(len(mesh.vertices), dtype=bool)
    mesh.vertices.foreach_get("select", out)
    return out


def read_texture_colors(obj: bpy.types.Object) -> np.ndarray | None:
    """(N, 3) sRGB per-vertex colours sampled from the object's first image texture at its UVs.

    A textured GT object has no colour attribute; this samples the image (nearest texel) at each corner's
    UV and averages the corners of every vertex. Texture detail between vertices is lost, which is why
    the audit prefers sending the GT's file when the object came from one. None when the object has no
    UV map or no image texture.
    """
    mesh = obj.data
    if not mesh.uv_layers or not obj.material_slots:
        return None
    image = None
    for slot in obj.material_slots:
        mat = slot.material
        if mat is None or mat.node_tree is None:
            continue
        for node in mat.node_tree.nodes:
            if node.type == "TEX_IMAGE" and node.image is not None and node.image.size[0] > 0:
                image = node.image
                break
        if image is not None:
            break
    if image is None:
        return None
    w, h = image.size
    channels = image.channels
    pixels = np.empty(w * h * channels, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    pixels = pixels.reshape(h, w, channels)[..., :3]
    if image.is_float:  # float images hold scene-linear values; byte images hold the sRGB bytes
        pixels = linear_to_srgb(pixels)
    uv_layer = mesh.uv_layers.active or mesh.uv_layers[0]
    uv = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    uv_layer.data.foreach_get("uv", uv)
    uv = uv.reshape(-1, 2) % 1.0
    col = np.clip((uv[:, 0] * w).astype(np.int64), 0, w - 1)
    row = np.clip((uv[:, 1] * h).astype(np.int64), 0, h - 1)  # Blender pixel rows start at the bottom
    return corners_to_points(mesh, pixels[row, col])
