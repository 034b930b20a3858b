"""Game-ready output: a decimated mesh with a UV texture baked from the colour field.

PIFu's marching-cubes mesh has 60-80k vertices and one colour each. The colour net is a continuous
field, so it can be queried anywhere on the surface: a texture holds far more colour detail per byte
than vertex colours. The steps (docs/api.md, "Textured output"):

1. :func:`decimate` the mesh to a face budget with quadric edge collapse (``fast-simplification``),
   which keeps the silhouette because it minimises the distance to the original planes;
2. :func:`unwrap` it into a padded atlas (``xatlas``);
3. :func:`rasterize` every UV triangle: the texels whose centres it covers, with barycentrics, all in
   vectorised numpy; :func:`bake_texture` turns those into surface points, queries the colour there in
   batches and fills the gutter texels from their nearest island texel, so bilinear and mip-mapped
   lookups at a seam never read the empty background; optionally :class:`ImageDetail` refines the
   texels the camera sees from the input image (docs/api.md, "Visible-side detail");
4. :func:`save_textured` writes GLB (glTF 2.0, baseColorTexture, y-up) or OBJ + MTL + PNG.

:func:`reconstruct_textured` runs it after :func:`backend.recon.reconstruct`, colouring the texels
with the same routine that colours the vertices there.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avatex_core import canonical
from avatex_core.atomic import write_bytes, write_text
from backend import triangles
from backend.errors import InputError

TEXTURE_SIZES = (512, 1024, 2048, 4096)
DEFAULT_FACES = 20_000
DEFAULT_SMOOTH = 0.009
"""Surface low-pass of the baked field, sigma in canonical units (about metres: 9 mm, about one
marching-cubes cell at resolution 256), chosen on validation avatars (docs/api.md, "Textured output")."""
TEXTURED_SUFFIXES = (".glb", ".obj")
DETAIL_MODES = ("net", "image", "blend")
ColorFn = Callable[[np.ndarray], np.ndarray]
DetailFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class TexturedMesh:
    """A UV-textured mesh: float32 vertices (M, 3) (split along UV seams), int32 faces (F, 3)
    counter-clockwise from outside, float32 uv (M, 2) with the origin at the image's bottom-left (the
    OBJ convention, as :mod:`backend.meshio` reads textures), uint8 sRGB texture (S, S, 3)."""

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    texture: np.ndarray
    stats: dict = field(default_factory=dict)


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int = DEFAULT_FACES
             ) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse decimation to about ``target_faces`` faces; a mesh already under the
    budget comes back unchanged. Winding is preserved (collapses keep the surviving triangles'
    orientation), so the result stays counter-clockwise from outside."""
    if not isinstance(target_faces, int) or target_faces < 100:
        raise InputError(f"target face count must be an integer >= 100, got {target_faces!r}")
    vertices = np.ascontiguousarray(vertices, dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    if len(faces) <= target_faces:
        return vertices, faces
    import fast_simplification

    v, f = fast_simplification.simplify(vertices, faces, target_count=target_faces)
    return np.ascontiguousarray(v, dtype=np.float32), np.ascontiguousarray(f, dtype=np.int32)


def unwrap(vertices: np.ndarray, faces: np.ndarray, size: int, padding: int | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UV atlas for a ``size``² texture: (source vertex of each new vertex (M,), faces (F, 3) on the
    new vertices, uv (M, 2) in [0, 1]). ``padding`` is the gap between charts in texels (default
    ``size / 256``, at least 2): the dilation fills it, and it must outlast the coarsest mip level a
    viewer is likely to use."""
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, dtype=np.float32), np.ascontiguousarray(faces, np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = int(size)
    pack.padding = int(padding if padding is not None else max(2, size // 256))
    pack.bilinear = True
    atlas.generate(pack_options=pack)
    vmapping, indices, uv = atlas[0]
    return (vmapping.astype(np.int64), np.ascontiguousarray(indices, dtype=np.int32),
            np.ascontiguousarray(uv, dtype=np.float32))


def rasterize(xy: np.ndarray, faces: np.ndarray, width: int, height: int, *, chunk: int = 4_000_000,
              unique: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels whose centres lie inside the 2D triangles ``xy[faces]``.

    ``xy`` (N, 2) are continuous pixel coordinates (column, row) with pixel (i, j)'s centre at
    (i + 0.5, j + 0.5). Returns (linear pixel index ``row * width + col`` (K,), face (K,), float64
    barycentrics (K, 3)); a pixel on an edge shared by two triangles is reported once (for the first);
    ``unique=False`` keeps every (pixel, triangle) hit instead, for a depth test.
    Each triangle's bounding box is enumerated with ``np.repeat``, in groups of at most ``chunk``
    candidate pixels, so memory stays bounded at 4096².
    """
    xy = np.asarray(xy, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    tri = xy[faces]  # (F, 3, 2)
    lo = np.maximum(np.ceil(tri.min(axis=1) - 0.5).astype(np.int64), 0)    # first centre >= min
    hi = np.minimum(np.floor(tri.max(axis=1) - 0.5).astype(np.int64), [width - 1, height - 1])
    span = np.maximum(hi - lo + 1, 0)
    counts = span[:, 0] * span[:, 1]
    group = np.maximum(np.cumsum(counts) - 1, 0) // chunk
    pix_parts, face_parts, bary_parts = [], [], []
    for sel in np.split(np.arange(len(faces)), np.flatnonzero(np.diff(group)) + 1):
        sel = sel[counts[sel] > 0]
        if not len(sel):
            continue
        n = counts[sel]
        fidx = np.repeat(sel, n)
        local = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        w = span[fidx, 0]
        px = lo[fidx, 0] + local % w
        py = lo[fidx, 1] + local // w
        a, b, c = tri[fidx, 0], tri[fidx, 1], tri[fidx, 2]
        cx, cy = px + 0.5, py + 0.5
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        w0 = (b[:, 0] - cx) * (c[:, 1] - cy) - (b[:, 1] - cy) * (c[:, 0] - cx)
        w1 = (c[:, 0] - cx) * (a[:, 1] - cy) - (c[:, 1] - cy) * (a[:, 0] - cx)
        ok = np.abs(area) > 1e-12
        safe = np.where(ok, area, 1.0)
        l0, l1 = w0 / safe, w1 / safe
        l2 = 1.0 - l0 - l1
        eps = -1e-9
        inside = ok & (l0 >= eps) & (l1 >= eps) & (l2 >= eps)
        pix_parts.append(py[inside] * width + px[inside])
        face_parts.append(fidx[inside])
        bary_parts.append(np.stack([l0[inside], l1[inside], l2[inside]], axis=1))
    if not pix_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    pix = np.concatenate(pix_parts)
    if not unique:
        return pix, np.concatenate(face_parts), np.clip(np.concatenate(bary_parts), 0, 1)
    _, first = np.unique(pix, return_index=True)
    return pix[first], np.concatenate(face_parts)[first], np.clip(np.concatenate(bary_parts)[first], 0, 1)


def uv_to_pixels(uv: np.ndarray, size: int) -> np.ndarray:
    """UVs (origin bottom-left) -> continuous texel coordinates (column, row from the top), the
    convention of :func:`backend.meshio.sample_texture`."""
    uv = np.asarray(uv, dtype=np.float64)
    return np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], axis=1)


def texel_points(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, size: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(linear texel index (K,), the 3D surface point (K, 3) float32 of each texel to bake, the face
    (K,) it lies on).

    The texels whose centres a UV triangle covers, plus the texel under each triangle corner when no
    centre covers it (there the corner's own point is used, on one of the corner's faces): a chart too
    thin to cover a centre would otherwise take a neighbouring chart's colour from the dilation.
    """
    xy = uv_to_pixels(uv, size)
    pix, face, bary = rasterize(xy, faces, size, size)
    faces = np.asarray(faces, dtype=np.int64)
    cell = np.clip(np.floor(xy).astype(np.int64), 0, size - 1)
    corner_pix = cell[:, 1] * size + cell[:, 0]
    extra, first = np.unique(corner_pix, return_index=True)
    keep = ~np.isin(extra, pix)
    v = np.asarray(vertices, dtype=np.float64)
    corners = v[faces[face]]
    points = np.concatenate([np.einsum("kc,kcj->kj", bary, corners), v[first[keep]]])
    face_of_vertex = np.zeros(len(v), dtype=np.int64)
    face_of_vertex[faces.ravel()] = np.repeat(np.arange(len(faces)), 3)
    return (np.concatenate([pix, extra[keep]]), points.astype(np.float32),
            np.concatenate([face, face_of_vertex[first[keep]]]))


def snap_to_surface(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The closest point (float32 (K, 3)) of the mesh ``vertices``/``faces`` to each point.

    A decimated surface cuts through the full one, up to a few millimetres off; the colour net is a 3D
    field trained on the true surface, so its colour there can differ from its colour on the
    vertex-coloured mesh. Querying at the full surface's closest point makes the texture sample the
    field where the vertices do.
    """
    from backend.metrics.geometry import point_to_surface

    _, _, closest = point_to_surface(points, vertices, faces)
    return np.ascontiguousarray(closest, dtype=np.float32)


def dilate(image: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Every unfilled texel takes the value of its nearest filled texel (Euclidean), so the gutters
    between islands continue each island's border colour instead of the background's."""
    from scipy import ndimage

    if filled.all() or not filled.any():
        return image
    _, (iy, ix) = ndimage.distance_transform_edt(~filled, return_indices=True)
    return image[iy, ix]


def chart_of_faces(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Chart index (F,) of every face of an unwrapped mesh, numbered from 0.

    xatlas splits vertices along chart borders, so two faces share a vertex exactly when they lie in one
    chart: the charts are the connected components of the face-vertex incidence graph.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(faces, dtype=np.int64)
    n = len(f) + int(n_vertices)
    rows = np.repeat(np.arange(len(f)), 3)
    graph = coo_matrix((np.ones(f.size, np.int8), (rows, len(f) + f.ravel())), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return np.unique(labels[: len(f)], return_inverse=True)[1].reshape(-1)


def texels_per_unit(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, size: int) -> float:
    """Texels per canonical unit of surface length: xatlas packs every chart at one density."""
    px = uv_to_pixels(uv, size)[np.asarray(faces, dtype=np.int64)]
    uv_area = 0.5 * np.abs(np.cross(px[:, 1] - px[:, 0], px[:, 2] - px[:, 0])).sum()
    area = triangles.areas(np.asarray(vertices, dtype=np.float64), faces).sum()
    return float(np.sqrt(uv_area / area)) if area > 0 else 0.0


def smooth_on_charts(colors: np.ndarray, pix: np.ndarray, chart: np.ndarray, size: int, sigma_px: float
                     ) -> np.ndarray:
    """Gaussian low-pass (``sigma_px`` texels) of texel colours, within each chart only.

    A blur over the whole image would mix neighbouring charts, which are unrelated places on the body
    a few texels apart; so each chart is blurred on its own crop, normalised by the blurred coverage,
    so that chart borders average only texels of their own chart.
    """
    from scipy import ndimage

    if sigma_px <= 0 or not len(pix):
        return colors
    colors = np.asarray(colors, dtype=np.float32)
    out = np.empty_like(colors)
    y, x = np.divmod(np.asarray(pix, dtype=np.int64), size)
    margin = int(np.ceil(3.0 * sigma_px)) + 1
    order = np.argsort(chart, kind="stable")
    for idx in np.split(order, np.flatnonzero(np.diff(chart[order])) + 1):
        yy, xx = y[idx] - y[idx].min() + margin, x[idx] - x[idx].min() + margin
        canvas = np.zeros((yy.max() + margin + 1, xx.max() + margin + 1, 4), np.float32)
        canvas[yy, xx, :3] = colors[idx]
        canvas[yy, xx, 3] = 1.0
        canvas = ndimage.gaussian_filter(canvas, (sigma_px, sigma_px, 0), mode="constant", truncate=3.0)
        out[idx] = canvas[yy, xx, :3] / np.maximum(canvas[yy, xx, 3:], 1e-6)
    return out


def bake_texture(color_fn: ColorFn, vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, size: int,
                 *, reference: tuple[np.ndarray, np.ndarray] | None = None,
                 detail: DetailFn | None = None, smooth: float = DEFAULT_SMOOTH) -> tuple[np.ndarray, dict]:
    """Texture (size, size, 3) uint8 sRGB whose texels hold ``color_fn`` at their surface points.

    ``color_fn`` maps float32 points (K, 3) to sRGB (K, 3) in [0, 1]; it is called once with every
    covered texel (it batches internally). ``reference`` (vertices, faces): query at the closest point
    of that surface instead (:func:`snap_to_surface`). ``detail`` (points, unit normals, colours) ->
    colours refines the queried colours, e.g. :class:`ImageDetail`. ``smooth``: Gaussian sigma in the
    mesh's units of a low-pass of the queried field along the surface (:func:`smooth_on_charts`),
    applied before the detail, so the image's detail is not blurred; 0 is off. Returns the image and
    stats (texels queried, coverage, seconds in the queries).
    """
    if not smooth >= 0:
        raise InputError(f"texture smoothing must be >= 0, got {smooth!r}")
    pix, points, face = texel_points(vertices, faces, uv, size)
    if not len(pix):
        raise InputError("the UV atlas covers no texel centre (texture too small for the mesh?)")
    stats: dict = {"texels": int(len(pix)), "coverage": round(len(pix) / size ** 2, 4)}
    if reference is not None:
        t = time.perf_counter()
        snapped = snap_to_surface(points, *reference)
        stats["snap_seconds"] = round(time.perf_counter() - t, 4)
        stats["snap_distance_mean"] = round(float(np.linalg.norm(snapped - points, axis=1).mean()), 6)
        points = snapped
    t = time.perf_counter()
    colors = np.asarray(color_fn(points), dtype=np.float32)
    stats["query_seconds"] = round(time.perf_counter() - t, 4)
    if smooth > 0:
        sigma_px = smooth * texels_per_unit(vertices, faces, uv, size)
        colors = smooth_on_charts(colors, pix, chart_of_faces(faces, len(vertices))[face], size, sigma_px)
        stats["smooth"] = {"sigma": smooth, "sigma_texels": round(sigma_px, 3)}
    if detail is not None:
        normals = triangles.unit_normals(np.asarray(vertices, dtype=np.float64), faces)[face]
        colors = np.asarray(detail(points, normals, colors), dtype=np.float32)
    image = np.zeros((size * size, 3), dtype=np.uint8)
    image[pix] = np.clip(np.rint(colors * 255.0), 0, 255).astype(np.uint8)
    filled = np.zeros(size * size, dtype=bool)
    filled[pix] = True
    image = dilate(image.reshape(size, size, 3), filled.reshape(size, size))
    return np.ascontiguousarray(image), stats


def texture_mesh(vertices: np.ndarray, faces: np.ndarray, color_fn: ColorFn, *, size: int = 2048,
                 target_faces: int = DEFAULT_FACES, snap: bool = False,
                 detail: DetailFn | None = None, smooth: float = DEFAULT_SMOOTH) -> TexturedMesh:
    """Decimate, unwrap and bake: the whole textured path on any mesh and colour field.

    ``snap``: query the colour where the texel's point lies on the *input* surface (its closest point),
    not on the decimated one. Off by default: the 20k-face surface lies 0.2 mm from the full one on
    average and snapping did not move PATD (docs/api.md, "Textured output"), but a coarser budget or a
    sharper colour field may need it. ``detail``, ``smooth``: see :func:`bake_texture`.
    """
    if size not in TEXTURE_SIZES:
        raise InputError(f"texture size must be one of {TEXTURE_SIZES}, got {size!r}")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    v, f = decimate(vertices, faces, target_faces)
    # Zero-area faces (marching cubes and edge collapses both leave a few) render nothing, and xatlas
    # parks them at UV (0, 0), whose texel belongs to some real chart.
    f = f[2.0 * triangles.areas(v.astype(np.float64), f) > 1e-12]
    seconds["decimate"] = time.perf_counter() - t
    t = time.perf_counter()
    source, f_uv, uv = unwrap(v, f, size)
    v_uv = v[source]
    seconds["unwrap"] = time.perf_counter() - t
    px = uv_to_pixels(uv, size)[f_uv]
    uv_area = np.abs(np.cross(px[:, 1] - px[:, 0], px[:, 2] - px[:, 0]))
    t = time.perf_counter()
    reference = (np.asarray(vertices), np.asarray(faces)) if snap else None
    texture, bake_stats = bake_texture(color_fn, v_uv, f_uv, uv, size, reference=reference, detail=detail,
                                       smooth=smooth)
    seconds["bake"] = time.perf_counter() - t
    stats = {"texture_size": size, "faces": int(len(f_uv)), "vertices": int(len(v_uv)),
             "source_faces": int(len(faces)), "snap": bool(snap), **bake_stats,
             # xatlas leaves the odd sliver without a chart, at UV (0, 0): it shows one texel's colour.
             "uncharted_faces": int((uv_area == 0).sum()),
             "seconds": {k: round(s, 4) for k, s in seconds.items()}}
    if isinstance(detail, ImageDetail):
        stats["detail"] = detail.stats
    return TexturedMesh(v_uv, f_uv, uv, texture, stats)


@dataclass
class ImageDetail:
    """Visible-side detail: the input image projected onto the texels the camera sees.

    The colour net predicts lighting-corrected colour but is smooth (its image features are a quarter
    of the input's resolution); the image is sharp but lit. ``mode``:

    * ``"image"``: visible texels take the image's colour (the official PIFu answer, PR #6);
    * ``"blend"``: visible texels take the net's colour plus the image's high frequencies, ``image -
      G_sigma(image)`` with a mask-normalised Gaussian (background never bleeds in). The net already
      *is* a low-pass field, so its own colour stands for its low frequencies; ``sigma`` (input pixels)
      is the scale below which the image, not the net, decides.

    Either way the image's share ``w`` fades from 1 (surface facing the camera, ``n_z >= 0.6``) to 0
    (``n_z <= 0.2``, grazing), is 0 behind the silhouette (mask) and for texels hidden from the
    orthographic camera (depth test against the full mesh's depth map, ``tolerance`` canonical units),
    so the back and the occluded parts keep the net's colour and there is no seam at the silhouette.
    """

    rgb: np.ndarray           # (S, S, 3) float32 in [0, 1]: the framed network input, unmasked
    mask: np.ndarray          # (S, S) float32 in [0, 1]
    depth: np.ndarray         # (S, S) float64: nearest surface z per pixel (+z toward the camera), -inf off
    calib: np.ndarray         # 4x4 canonical -> normalised image coordinates (y down)
    mode: str = "blend"
    sigma: float = 4.0
    tolerance: float = 0.02
    stats: dict = field(default_factory=dict)

    @classmethod
    def from_view(cls, rgb: np.ndarray, mask: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                  calib: np.ndarray, mode: str = "blend", **kwargs) -> ImageDetail:
        """Build it from the framed view and the mesh whose surface decides what the camera sees."""
        if mode not in DETAIL_MODES or mode == "net":
            raise InputError(f"image detail mode must be 'image' or 'blend', got {mode!r}")
        size = int(rgb.shape[0])
        return cls(np.asarray(rgb, np.float32), np.asarray(mask, np.float32),
                   depth_map(vertices, faces, calib, size), np.asarray(calib, np.float64), mode, **kwargs)

    def weights(self, points: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image share w (K,) in [0, 1], continuous pixel coordinates (K, 2)) of surface points."""
        size = self.rgb.shape[0]
        proj = canonical.project(points, self.calib)
        xy = canonical.to_pixels(proj[:, :2], size)
        cell = np.clip(np.rint(xy).astype(np.int64), 0, size - 1)
        visible = proj[:, 2] >= self.depth[cell[:, 1], cell[:, 0]] - self.tolerance
        facing = (normals @ self.calib[2, :3]).astype(np.float64)   # the view direction's component
        w = np.clip((facing - 0.2) / 0.4, 0.0, 1.0) * visible * _bilinear(self.mask[..., None], xy)[:, 0]
        return w, xy

    def __call__(self, points: np.ndarray, normals: np.ndarray, colors: np.ndarray) -> np.ndarray:
        w, xy = self.weights(points, normals)
        if self.mode == "image":
            source = _bilinear(self.rgb, xy)
            out = colors + w[:, None] * (source - colors)
        else:
            out = colors + w[:, None] * _bilinear(self.high_pass(), xy)
        self.stats = {"mode": self.mode, **({"sigma": self.sigma} if self.mode == "blend" else {}),
                      "image_texels": int((w > 0).sum()), "image_share": round(float(w.mean()), 4)}
        return np.clip(out, 0.0, 1.0)

    def high_pass(self) -> np.ndarray:
        """``rgb - G(rgb * mask) / G(mask)`` inside the mask, 0 outside: the image's detail only."""
        from scipy import ndimage

        m = self.mask[..., None]
        low = ndimage.gaussian_filter(self.rgb * m, (self.sigma, self.sigma, 0))
        weight = ndimage.gaussian_filter(self.mask, self.sigma)[..., None]
        inside = weight > 1e-3
        low = np.divide(low, weight, out=np.zeros_like(low), where=inside)
        return np.where(inside & (m > 0), self.rgb - low, 0.0).astype(np.float32)


def depth_map(vertices: np.ndarray, faces: np.ndarray, calib: np.ndarray, size: int) -> np.ndarray:
    """(size, size) z of the surface nearest the orthographic camera at each pixel centre (+z toward
    the camera after ``calib``), -inf where the mesh does not cover the pixel."""
    proj = canonical.project(vertices, calib)
    xy = canonical.to_pixels(proj[:, :2], size) + 0.5     # rasterize puts pixel centres at i + 0.5
    pix, face, bary = rasterize(xy, faces, size, size, unique=False)
    depth = np.full(size * size, -np.inf)
    np.maximum.at(depth, pix, np.einsum("kc,kc->k", bary, proj[np.asarray(faces)[face], 2]))
    return depth.reshape(size, size)


def _bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(K, C) bilinear samples of an (H, W, C) image at continuous pixel coordinates (column, row),
    pixel centres at integers, clamped at the border (the ``align_corners=True`` convention)."""
    h, w = image.shape[:2]
    x = np.clip(xy[:, 0], 0, w - 1)
    y = np.clip(xy[:, 1], 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def reconstruct_textured(model, image: np.ndarray, mask: np.ndarray | None = None, *,
                         texture_size: int = 2048, target_faces: int = DEFAULT_FACES, detail: str = "net",
                         snap: bool = False, smooth: float = DEFAULT_SMOOTH, **kwargs):
    """:func:`backend.recon.reconstruct`, then texture its mesh from the colour net (or, for a
    geometry-only model, from the input image: the same source the vertex colours use).

    ``detail``: ``"net"`` (the colour field only), ``"image"`` or ``"blend"`` (the input image on the
    side the camera sees, :class:`ImageDetail`). ``snap``, ``smooth``: see :func:`texture_mesh`.
    Returns ``(Reconstruction, TexturedMesh)``: the full vertex-coloured mesh and the textured one.
    The image is framed and encoded again after the reconstruction (one encoder pass), so the
    reconstruction itself stays untouched.
    """
    import torch

    from avatex_core.progress import NULL
    from backend.models.device import resolve_device
    from backend.recon.framing import frame_subject
    from backend.recon.pipeline import _vertex_colors, default_chunk, reconstruct

    if texture_size not in TEXTURE_SIZES:
        raise InputError(f"texture size must be one of {TEXTURE_SIZES}, got {texture_size!r}")
    if detail not in DETAIL_MODES:
        raise InputError(f"texture detail must be one of {DETAIL_MODES}, got {detail!r}")
    if not smooth >= 0:
        raise InputError(f"texture smoothing must be >= 0, got {smooth!r}")
    rec = reconstruct(model, image, mask, **kwargs)
    dev = resolve_device(kwargs.get("device"))
    chunk = kwargs.get("chunk") or default_chunk(dev)
    progress = kwargs.get("progress") or NULL
    baking = progress.sub(0.0, 1.0, stage="texture")  # the colour queries report as stage "texture"

    framed = frame_subject(image, mask, size=model.config.load_size)
    calib_np = canonical.calib_for_view(0.0)
    calib = torch.from_numpy(calib_np).float().unsqueeze(0).to(dev)
    refine = None if detail == "net" else ImageDetail.from_view(framed.rgb, framed.mask, rec.vertices,
                                                                rec.faces, calib_np, detail)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model.encode(torch.from_numpy(framed.network_input()).to(dev))

            def color_fn(points: np.ndarray) -> np.ndarray:
                return _vertex_colors(model, framed, points, calib, dev, kwargs.get("fast"), chunk, baking)[0]

            textured = texture_mesh(rec.vertices, rec.faces, color_fn, size=texture_size,
                                    target_faces=target_faces, snap=snap, detail=refine, smooth=smooth)
    finally:
        model.train(was_training)
    textured.stats["crop"] = rec.stats.get("crop")
    textured.stats["image_size"] = rec.stats.get("image_size")
    textured.stats["input_size"] = rec.stats.get("input_size")
    return rec, textured


def save_textured(path: str | Path, mesh: TexturedMesh, *, overwrite: bool = False) -> list[Path]:
    """Write ``mesh`` by the suffix of ``path``: ``.glb`` (one file: glTF 2.0 with the PNG embedded as
    baseColorTexture, y-up; canonical units are written as metres, so a subject is 1.76 m tall) or
    ``.obj`` (+ ``.mtl`` + ``.png`` beside it, same stem). Each file is written atomically; existing
    files are refused unless ``overwrite``. Returns the paths written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TEXTURED_SUFFIXES:
        raise InputError(f"a textured mesh is written as .glb or .obj, not {path.suffix!r} ({path.name})")
    targets = [path] if suffix == ".glb" else [path, path.with_suffix(".mtl"), path.with_suffix(".png")]
    existing = [p.name for p in targets if p.exists()]
    if existing and not overwrite:
        raise InputError(f"refusing to overwrite {', '.join(existing)} in {path.parent}")
    if suffix == ".glb":
        write_bytes(path, glb_bytes(mesh))
        return targets
    png = _png_bytes(mesh.texture)
    mtl = (f"# avatex\nnewmtl avatex\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
           f"map_Kd {targets[2].name}\n")
    body = io.StringIO()
    body.write(f"# avatex textured mesh\nmtllib {targets[1].name}\no avatex\n")
    np.savetxt(body, mesh.vertices.astype(np.float64), fmt="v %.6f %.6f %.6f")
    np.savetxt(body, mesh.uv.astype(np.float64), fmt="vt %.6f %.6f")
    body.write("usemtl avatex\n")
    idx = mesh.faces.astype(np.int64) + 1
    np.savetxt(body, np.repeat(idx, 2, axis=1), fmt="f %d/%d %d/%d %d/%d")
    write_bytes(targets[2], png)
    write_text(targets[1], mtl)
    write_text(path, body.getvalue())
    return targets


def glb_bytes(mesh: TexturedMesh) -> bytes:
    """The binary glTF of ``mesh``: one node, one primitive with POSITION and TEXCOORD_0, a PBR
    material whose baseColorTexture is the PNG (non-metallic, fully rough: the colours are albedo)."""
    import trimesh
    from PIL import Image

    material = trimesh.visual.material.PBRMaterial(
        name="avatex", baseColorTexture=Image.fromarray(mesh.texture, "RGB"), metallicFactor=0.0,
        roughnessFactor=1.0, doubleSided=False)
    tm = trimesh.Trimesh(vertices=mesh.vertices.astype(np.float64), faces=mesh.faces, process=False,
                         visual=trimesh.visual.TextureVisuals(uv=mesh.uv, material=material))
    return trimesh.Scene(tm).export(file_type="glb")


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()
