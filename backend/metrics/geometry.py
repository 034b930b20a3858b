"""Geometry metrics beside PATD: point-to-surface distances, Chamfer distance, normal consistency.

Conventions (docs/metrics.md):

* Distances are true point-to-triangle distances (closest point on the surface, not on a point
  sample), from ``samples`` area-uniform surface samples of one mesh to the other mesh's surface.
* ``pred_to_gt`` is the mean distance from the prediction to the GT surface (what the brief calls
  point-to-surface; SiTH's "P-to-S"), ``gt_to_pred`` the reverse (ICON/ECON's "P2S", scan to
  reconstruction), and ``chamfer`` = (pred_to_gt + gt_to_pred) / 2 (ICON/ECON's Chamfer).
* ``normal_consistency`` is the mean |cos| between a sample's face normal and the normal of the face
  holding its closest point on the other mesh, averaged over both directions: 1 is perfect, higher is
  better (SiTH's convention; ICON's "NC" is a different, image-space error). The absolute value makes
  it blind to flipped winding, which reconstructions from marching cubes often have.
* Values are in the meshes' own units; with ``cm_per_unit`` also in centimetres. For canonical-space
  meshes (design.md §3) use :func:`cm_per_canonical_unit` with the subject's real height, or
  :func:`cm_per_unit_from_normalization` when the source scan's units are known.

The closest-point search prefilters triangles with a KD-tree on their centroids and is exact: a row
is accepted only when no unexamined triangle can be closer (centroid distance minus the largest
centroid-to-corner radius), otherwise it is asked again with more candidates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from avatex_core.canonical import CANONICAL_HEIGHT, Normalization
from backend.errors import InputError
from backend.meshio import ColoredMesh, sample_surface
from backend.metrics.knn import morton_codes

DEFAULT_SAMPLES = 100_000
_PAIRS_PER_CHUNK = 1 << 15


@dataclass(frozen=True)
class GeometryMetrics:
    """Mean distances (mesh units; ``*_cm`` when a scale was given) and normal consistency."""

    pred_to_gt: float
    gt_to_pred: float
    chamfer: float
    normal_consistency: float
    samples: int
    cm_per_unit: float | None = None

    @property
    def pred_to_gt_cm(self) -> float | None:
        return None if self.cm_per_unit is None else self.pred_to_gt * self.cm_per_unit

    @property
    def gt_to_pred_cm(self) -> float | None:
        return None if self.cm_per_unit is None else self.gt_to_pred * self.cm_per_unit

    @property
    def chamfer_cm(self) -> float | None:
        return None if self.cm_per_unit is None else self.chamfer * self.cm_per_unit

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.cm_per_unit is not None:
            out.update(pred_to_gt_cm=self.pred_to_gt_cm, gt_to_pred_cm=self.gt_to_pred_cm,
                       chamfer_cm=self.chamfer_cm)
        return out


def cm_per_canonical_unit(subject_height_m: float) -> float:
    """Centimetres per canonical unit for a subject ``subject_height_m`` metres tall.

    The canonical space scales every subject to ``CANONICAL_HEIGHT`` units (design.md §3).
    """
    if not subject_height_m > 0:
        raise InputError(f"subject height must be positive metres, got {subject_height_m!r}")
    return 100.0 * float(subject_height_m) / CANONICAL_HEIGHT


def cm_per_unit_from_normalization(normalization: Normalization, source_unit_m: float = 1.0) -> float:
    """Centimetres per canonical unit from a subject's :class:`Normalization` (stored by the dataset).

    ``source_unit_m`` is the length of one source-mesh unit in metres (1 for scans in metres, 0.01 for
    centimetres): the normalisation only knows the source height in source units.
    """
    if not source_unit_m > 0:
        raise InputError(f"source_unit_m must be positive, got {source_unit_m!r}")
    return 100.0 * source_unit_m / float(normalization.scale)


def geometry_metrics(pred_vertices: np.ndarray, pred_faces: np.ndarray, gt_vertices: np.ndarray,
                     gt_faces: np.ndarray, *, samples: int = DEFAULT_SAMPLES,
                     rng: np.random.Generator | int | None = None,
                     cm_per_unit: float | None = None) -> GeometryMetrics:
    """Chamfer, both point-to-surface directions and normal consistency of two meshes in one space.

    ``samples`` area-uniform points are drawn on each mesh (``rng``: Generator or seed, default 0).
    """
    pv, pf = _mesh(pred_vertices, pred_faces, "reconstructed mesh")
    gv, gf = _mesh(gt_vertices, gt_faces, "GT mesh")
    if not isinstance(samples, int | np.integer) or samples < 1:
        raise InputError(f"samples must be a positive integer, got {samples!r}")
    if cm_per_unit is not None and not cm_per_unit > 0:
        raise InputError(f"cm_per_unit must be positive, got {cm_per_unit!r}")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(
        0 if rng is None else rng)
    pred_pts, pred_face = _samples(pv, pf, int(samples), generator)
    gt_pts, gt_face = _samples(gv, gf, int(samples), generator)
    pred_normals, gt_normals = face_normals(pv, pf), face_normals(gv, gf)
    d_pg, f_pg, _ = point_to_surface(pred_pts, gv, gf)
    d_gp, f_gp, _ = point_to_surface(gt_pts, pv, pf)
    cos_pg = np.abs(np.einsum("ij,ij->i", pred_normals[pred_face], gt_normals[f_pg]))
    cos_gp = np.abs(np.einsum("ij,ij->i", gt_normals[gt_face], pred_normals[f_gp]))
    pred_to_gt, gt_to_pred = float(d_pg.mean()), float(d_gp.mean())
    return GeometryMetrics(
        pred_to_gt=pred_to_gt, gt_to_pred=gt_to_pred, chamfer=0.5 * (pred_to_gt + gt_to_pred),
        normal_consistency=0.5 * (float(cos_pg.mean()) + float(cos_gp.mean())),
        samples=int(samples), cm_per_unit=None if cm_per_unit is None else float(cm_per_unit))


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit face normals (F, 3) from counter-clockwise winding; zero for degenerate faces."""
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > 0)


def point_to_surface(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, *,
                     candidates: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact distance from each point to a triangle mesh's surface.

    Returns (distances (N,), index of the face holding the closest point (N,), closest points (N, 3)).
    Degenerate (zero-area) faces are ignored: they add no surface.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"points must be an (N, 3) array, got shape {points.shape}")
    vertices, faces = _mesh(vertices, faces, "mesh")
    if len(points) <= 4096:
        return _point_to_surface(points, vertices, faces, candidates)
    # Spatially ordered queries walk the tree and gather triangles cache-friendly (~1.7x faster for
    # random surface samples).
    order = np.argsort(morton_codes(points), kind="stable")
    d, face, closest = _point_to_surface(points[order], vertices, faces, candidates)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return d[inverse], face[inverse], closest[inverse]


def _point_to_surface(points, vertices, faces, candidates):
    tri_all = vertices[faces]
    area2 = np.linalg.norm(np.cross(tri_all[:, 1] - tri_all[:, 0], tri_all[:, 2] - tri_all[:, 0]), axis=1)
    keep = np.flatnonzero(area2 > 0)
    if len(keep) == 0:
        raise InputError("mesh has no faces with area")
    tri = tri_all[keep]
    table = _TriangleTable(tri)
    centroids = tri.mean(axis=1)
    radius = float(np.linalg.norm(tri - centroids[:, None, :], axis=2).max())
    tree = cKDTree(centroids)
    n, f = len(points), len(tri)
    best_d2 = np.full(n, np.inf)
    best_face = np.zeros(n, dtype=np.int64)
    pending = np.arange(n)
    kc = min(max(1, candidates), f)
    while len(pending):
        everything = kc >= f
        if everything:
            cand = np.broadcast_to(np.arange(f), (len(pending), f))
        else:
            cdist, cand = tree.query(points[pending], k=kc, workers=-1)
            cand = cand.reshape(len(pending), kc)
            cdist = cdist.reshape(len(pending), kc)
        rows = max(1, _PAIRS_PER_CHUNK // cand.shape[1])
        for start in range(0, len(pending), rows):
            sel = pending[start:start + rows]
            faces_idx = cand[start:start + rows]
            d2 = table.squared_distances(points[sel], faces_idx)
            j = np.argmin(d2, axis=1)
            r = np.arange(len(sel))
            best_d2[sel] = d2[r, j]
            best_face[sel] = faces_idx[r, j]
        if everything:
            break
        # Exact when no triangle outside the candidates can be closer.
        exact = np.sqrt(best_d2[pending]) <= cdist[:, -1] - radius
        pending = pending[~exact]
        kc = min(kc * 2, f)
    t = tri[best_face]
    closest, d2 = closest_point_on_triangles(points, t[:, 0], t[:, 1], t[:, 2])
    return np.sqrt(d2), keep[best_face], closest


class _TriangleTable:
    """Per-triangle constants of the point-to-triangle distance, stored as columns for gathering."""

    def __init__(self, tri: np.ndarray) -> None:
        a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
        ab, ac, bc = b - a, c - a, c - b
        d00, d01, d11 = _dot(ab, ab), _dot(ab, ac), _dot(ac, ac)
        cols = [a[:, 0], a[:, 1], a[:, 2], ab[:, 0], ab[:, 1], ab[:, 2], ac[:, 0], ac[:, 1], ac[:, 2],
                bc[:, 0], bc[:, 1], bc[:, 2], d00, d01, d11, 1.0 / (d00 * d11 - d01 * d01),
                1.0 / d00, 1.0 / d11, 1.0 / _dot(bc, bc)]
        self.cols = np.ascontiguousarray(np.stack(cols))

    def squared_distances(self, points: np.ndarray, faces_idx: np.ndarray) -> np.ndarray:
        """(rows, kc) squared distances from points (rows, 3) to the listed triangles (rows, kc)."""
        (ax, ay, az, abx, aby, abz, acx, acy, acz, bcx, bcy, bcz,
         d00, d01, d11, inv_den, inv_ab, inv_ac, inv_bc) = (np.take(col, faces_idx) for col in self.cols)
        px, py, pz = (points[:, i:i + 1] for i in range(3))
        apx, apy, apz = px - ax, py - ay, pz - az
        d20 = apx * abx + apy * aby + apz * abz
        d21 = apx * acx + apy * acy + apz * acz
        v = (d11 * d20 - d01 * d21) * inv_den
        w = (d00 * d21 - d01 * d20) * inv_den
        inside = (v >= 0) & (w >= 0) & (v + w <= 1)
        best = np.where(inside, _sq(apx - v * abx - w * acx, apy - v * aby - w * acy,
                                    apz - v * abz - w * acz), np.inf)
        t = np.clip(d20 * inv_ab, 0.0, 1.0)
        np.minimum(best, _sq(apx - t * abx, apy - t * aby, apz - t * abz), out=best)
        t = np.clip(d21 * inv_ac, 0.0, 1.0)
        np.minimum(best, _sq(apx - t * acx, apy - t * acy, apz - t * acz), out=best)
        bpx, bpy, bpz = apx - abx, apy - aby, apz - abz
        t = np.clip((bpx * bcx + bpy * bcy + bpz * bcz) * inv_bc, 0.0, 1.0)
        np.minimum(best, _sq(bpx - t * bcx, bpy - t * bcy, bpz - t * bcz), out=best)
        return best


def _sq(x, y, z):
    return x * x + y * y + z * z


def closest_point_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Closest points on triangles (a, b, c) to points p, all (M, 3); returns (points, squared distances).

    The projection onto the triangle's plane when it falls inside the triangle, else the closest of
    the three edge-segment points.
    """
    ab, ac, ap = b - a, c - a, p - a
    d00 = _dot(ab, ab)
    d01 = _dot(ab, ac)
    d11 = _dot(ac, ac)
    d20 = _dot(ap, ab)
    d21 = _dot(ap, ac)
    denom = d00 * d11 - d01 * d01
    safe = np.where(denom > 0, denom, 1.0)
    v = (d11 * d20 - d01 * d21) / safe
    w = (d00 * d21 - d01 * d20) / safe
    inside = (denom > 0) & (v >= 0) & (w >= 0) & (v + w <= 1)
    best = a + v[:, None] * ab + w[:, None] * ac
    best_d2 = np.where(inside, _dot(p - best, p - best), np.inf)
    for x, y in ((a, b), (b, c), (c, a)):
        q, d2 = _closest_on_segments(p, x, y)
        better = d2 < best_d2
        best[better] = q[better]
        best_d2 = np.where(better, d2, best_d2)
    return best, best_d2


def _closest_on_segments(p, x, y):
    e = y - x
    ee = _dot(e, e)
    t = np.clip(_dot(p - x, e) / np.where(ee > 0, ee, 1.0), 0.0, 1.0)
    q = x + t[:, None] * e
    diff = p - q
    return q, _dot(diff, diff)


def _dot(u, v):
    return np.einsum("ij,ij->i", u, v)


def _samples(vertices, faces, count, rng):
    pts, face_index, _ = sample_surface(ColoredMesh(vertices=vertices, faces=faces), count, rng)
    return pts, face_index


def _mesh(vertices, faces, what: str) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise InputError(f"{what}: vertices must be a non-empty (N, 3) array, got shape {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise InputError(f"{what}: faces must be a non-empty (F, 3) array, got shape {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        raise InputError(f"{what}: faces must be integer indices, got dtype {f.dtype}")
    v = v.astype(np.float64, copy=False)
    if not np.isfinite(v).all():
        raise InputError(f"{what}: vertices contain NaN or infinite values")
    if f.min() < 0 or f.max() >= len(v):
        raise InputError(f"{what}: face indices outside 0..{len(v) - 1}")
    return v, f.astype(np.int64, copy=False)
