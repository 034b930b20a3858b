"""Training samplers on a subject's GT mesh, in canonical space (docs/training.md).

Three kinds of training points, each a pure function of a :class:`~backend.meshio.ColoredMesh` (or of
what was precomputed from it) and a numpy ``Generator``:

* **geometry points** (PIFu's ``select_sampling_method``): surface samples plus isotropic Gaussian
  offsets, and uniform points in the box [-1, 1]^3, mixed 16:1, labelled inside/outside with generalised
  winding numbers (:mod:`backend.data.inside`) and balanced as PIFu does;
* **colour points** (PIFu's ``get_color_sampling``): area-uniform GT surface points with their albedo
  colours, each moved along its normal by one scalar N(0, sigma) offset;
* **3D patches** for the patch-wise SSIM loss: M area-uniform centres, each with P points *on* the GT
  surface around it -- a k x k tangent-plane grid projected to the surface (default) or the P nearest
  dense surface samples -- with GT colours interpolated from the texture or the vertex colours, and one
  normal offset shared by the whole patch.

The expensive, per-subject part (dense surface samples with colours and normals, and a pool of labelled
geometry points) is computed once by :func:`dense_surface_samples` / :func:`geometry_pool` and cached on
disk by the training data pipeline; the per-iteration samplers only index into it, so they cost
milliseconds.

Units: PIFu's sigmas are in its mesh units, where a subject is 180 units tall; canonical space puts the
same subject at ``CANONICAL_HEIGHT`` (1.7578) units, so one PIFu unit is 1/102.4 canonical units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from avatex_core.canonical import CANONICAL_HEIGHT
from backend import triangles
from backend.data import inside as inside_mod
from backend.errors import InputError
from backend.meshio import ColoredMesh, sample_surface

CANONICAL_PER_PIFU_UNIT = CANONICAL_HEIGHT / 180.0
"""One unit of PIFu's training meshes (subjects 180 units tall) in canonical units (= 1/102.4)."""

PIFU_GEOMETRY_SIGMA = 5.0 * CANONICAL_PER_PIFU_UNIT
"""PIFu's ``--sigma 5`` for shape samples (5 cm on a 1.8 m person) in canonical units: 0.0488."""

PIFU_COLOR_SIGMA = 0.1 * CANONICAL_PER_PIFU_UNIT
"""PIFu's ``--sigma 0.1`` for colour samples (1 mm) in canonical units: 0.000977."""

SURFACE_TO_UNIFORM = 16
"""PIFu draws 4N surface and N/4 uniform points: a 16:1 mix."""

PatchMode = Literal["grid", "nearest"]
PATCH_MODES: tuple[str, ...] = get_args(PatchMode)
CANDIDATES = 4
"""Patch grid points are projected to the closest point among the faces of their 4 nearest dense samples,
and of every face sharing a vertex with the nearest sample's face when that foot lies on a border."""
PatchWeighting = Literal["uniform", "gaussian"]
PATCH_WEIGHTINGS: tuple[str, ...] = get_args(PatchWeighting)


# -- per-subject precomputation -----------------------------------------------------------------------

@dataclass
class SurfaceSamples:
    """Dense area-uniform GT surface samples: the per-subject source of colour points and patches.

    Attributes: ``points`` (N, 3) float32, ``normals`` (N, 3) float32 unit (smooth, interpolated vertex
    normals), ``colors`` (N, 3) float32 sRGB [0, 1] (barycentric interpolation of the GT colours),
    ``face`` (N,) int32 and ``barycentric`` (N, 3) float32.
    """

    points: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    face: np.ndarray
    barycentric: np.ndarray

    def __len__(self) -> int:
        return len(self.points)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"points": self.points, "normals": self.normals, "colors": self.colors,
                "face": self.face, "barycentric": self.barycentric}

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> SurfaceSamples:
        return cls(points=d["points"], normals=d["normals"], colors=d["colors"], face=d["face"],
                   barycentric=d["barycentric"])


@dataclass
class GeometryPool:
    """Labelled candidate geometry points: surface+Gaussian ones and uniform ones, kept apart so a draw
    can keep PIFu's 16:1 mix. Labels are True inside."""

    surface_points: np.ndarray
    surface_inside: np.ndarray
    uniform_points: np.ndarray
    uniform_inside: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"surface_points": self.surface_points, "surface_inside": self.surface_inside,
                "uniform_points": self.uniform_points, "uniform_inside": self.uniform_inside}

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> GeometryPool:
        return cls(surface_points=d["surface_points"], surface_inside=d["surface_inside"].astype(bool),
                   uniform_points=d["uniform_points"], uniform_inside=d["uniform_inside"].astype(bool))


def vertex_normals(mesh: ColoredMesh) -> np.ndarray:
    """(N, 3) unit vertex normals: area-weighted sum of the adjacent faces' normals."""
    return triangles.vertex_normals(mesh.vertices, mesh.faces)


def _unit(v: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    out = v / np.maximum(n, 1e-12)
    if fallback is not None:
        bad = (n[..., 0] < 1e-12)
        out[bad] = fallback[bad]
    return out


def interpolated_normals(mesh: ColoredMesh, vnormals: np.ndarray, face: np.ndarray,
                         bary: np.ndarray) -> np.ndarray:
    """Unit normals at surface points: barycentric blend of vertex normals (face normal where it
    cancels, e.g. on a fold)."""
    corners = mesh.faces[face]
    n = np.einsum("mk,mkj->mj", bary, vnormals[corners])
    length = np.linalg.norm(n, axis=1)
    out = n / np.maximum(length, 1e-12)[:, None]
    bad = length < 1e-6
    if bad.any():
        out[bad] = _unit(triangles.cross(mesh.vertices, mesh.faces[face[bad]]))
    return out


def vertex_faces(mesh: ColoredMesh) -> np.ndarray:
    """(N, V) faces incident to each vertex, padded with -1 (V = the largest valence)."""
    flat = mesh.faces.reshape(-1)
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=len(mesh.vertices))
    width = max(1, int(counts.max()))
    out = np.full((len(mesh.vertices), width), -1, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(flat)) - np.repeat(starts, counts)
    out[flat[order], rank] = order // 3
    return out


def dense_surface_samples(mesh: ColoredMesh, count: int, rng: np.random.Generator) -> SurfaceSamples:
    """``count`` area-uniform GT surface samples with colours and smooth normals."""
    if not mesh.has_colors:
        raise InputError("the GT mesh has neither vertex colours nor a texture: no colour targets")
    points, face, bary = sample_surface(mesh, count, rng)
    normals = interpolated_normals(mesh, vertex_normals(mesh), face, bary)
    colors = mesh.colors_at(face, bary)
    return SurfaceSamples(points=points.astype(np.float32), normals=normals.astype(np.float32),
                          colors=colors.astype(np.float32), face=face.astype(np.int32),
                          barycentric=bary.astype(np.float32))


def geometry_pool(mesh: ColoredMesh, n_surface: int, n_uniform: int, sigma: float,
                  rng: np.random.Generator, box: tuple[float, float] = (-1.0, 1.0)) -> GeometryPool:
    """A pool of labelled geometry candidates: surface samples + N(0, sigma^2 I) offsets, and uniform
    points in ``box``^3. Labels come from generalised winding numbers, so holes in the scan do not flip
    them."""
    surf, _, _ = sample_surface(mesh, n_surface, rng)
    surf = surf + rng.normal(0.0, sigma, surf.shape)
    uni = rng.uniform(box[0], box[1], (n_uniform, 3))
    tree = inside_mod.build_tree(mesh.vertices, mesh.faces)
    labels = inside_mod.inside(mesh.vertices, mesh.faces, np.concatenate([surf, uni]), tree=tree)
    return GeometryPool(surface_points=surf.astype(np.float32), surface_inside=labels[:n_surface],
                        uniform_points=uni.astype(np.float32), uniform_inside=labels[n_surface:])


# -- per-iteration samplers ----------------------------------------------------------------------------

def geometry_points(pool: GeometryPool, n: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled geometry points drawn as PIFu's ``select_sampling_method`` does.

    4n surface candidates and n/4 uniform ones (16:1) are shuffled together; if more than n/2 are inside,
    n/2 inside and n/2 outside are kept, otherwise all inside ones and the first n - n_in outside ones.
    Unlike PIFu, the result always has exactly ``n`` points (a short class is topped up from the other),
    so items batch. Returns points (n, 3) float32 and labels (n,) float32 in {0, 1}.
    """
    n_surf = min(4 * n, len(pool.surface_points))
    n_uni = min(max(n // 4, 1), len(pool.uniform_points))
    si = rng.choice(len(pool.surface_points), n_surf, replace=False)
    ui = rng.choice(len(pool.uniform_points), n_uni, replace=False)
    pts = np.concatenate([pool.surface_points[si], pool.uniform_points[ui]])
    lab = np.concatenate([pool.surface_inside[si], pool.uniform_inside[ui]])
    perm = rng.permutation(len(pts))
    pts, lab = pts[perm], lab[perm]
    inside_idx = np.flatnonzero(lab)
    outside_idx = np.flatnonzero(~lab)
    half = n // 2
    if len(inside_idx) > half:
        n_in = min(half, len(inside_idx))
        n_out = min(n - n_in, len(outside_idx))
        n_in = min(n - n_out, len(inside_idx))
    else:
        n_in = len(inside_idx)
        n_out = min(n - n_in, len(outside_idx))
    keep = np.concatenate([inside_idx[:n_in], outside_idx[:n_out]])
    if len(keep) < n:
        raise InputError(f"geometry pool too small for {n} points ({len(pts)} candidates)")
    return pts[keep].astype(np.float32), lab[keep].astype(np.float32)


def color_points(samples: SurfaceSamples, n: int, rng: np.random.Generator, sigma: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` GT surface points with albedo colours, each offset along its normal by one N(0, sigma)
    scalar (PIFu's colour sampling). Returns points (n, 3) float32 and sRGB colours (n, 3) in [0, 1]."""
    idx = rng.integers(0, len(samples), n)
    eps = rng.normal(0.0, sigma, n).astype(np.float32) if sigma > 0 else np.zeros(n, np.float32)
    pts = samples.points[idx] + samples.normals[idx] * eps[:, None]
    return pts.astype(np.float32), samples.colors[idx]


@dataclass
class Patches:
    """M surface patches of P points each: ``points`` (M, P, 3), sRGB ``colors`` (M, P, 3),
    ``weights`` (M, P) summing to 1 per patch, ``centers`` (M, 3). For grid patches point p is grid cell
    (p // k, p % k), so index p is the same in-patch offset in every patch (what the paper's variant
    reduces over)."""

    points: np.ndarray
    colors: np.ndarray
    weights: np.ndarray
    centers: np.ndarray


def tangent_frames(normals: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two unit tangents (M, 3) per normal, randomly rotated about the normal so grids have no
    preferred direction."""
    helper = np.where(np.abs(normals[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    t1 = _unit(np.cross(normals, helper))
    t2 = np.cross(normals, t1)
    theta = rng.uniform(0.0, 2 * np.pi, (len(normals), 1))
    c, s = np.cos(theta), np.sin(theta)
    return c * t1 + s * t2, -s * t1 + c * t2


def grid_offsets(k: int, spacing: float) -> np.ndarray:
    """(k*k, 2) tangent-plane offsets of a k x k grid centred on 0, row-major."""
    r = (np.arange(k) - (k - 1) / 2.0) * spacing
    uu, vv = np.meshgrid(r, r, indexing="ij")
    return np.stack([uu.ravel(), vv.ravel()], axis=1)


def closest_on_triangles(tri: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (Q, 3) of the closest point of each triangle ``tri`` (Q, 3, 3) to
    ``points`` (Q, 3): the Voronoi-region case analysis (vertex, edge or face region), vectorised."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac = b - a, c - a

    def dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", u, v)

    ap, bp, cp = points - a, points - b, points - c
    d1, d2 = dot(ab, ap), dot(ac, ap)
    d3, d4 = dot(ab, bp), dot(ac, bp)
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2

    def safe(x: np.ndarray) -> np.ndarray:
        return np.where(np.abs(x) < 1e-300, 1e-300, x)

    def bary(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.stack(np.broadcast_arrays(u, v, w, d1)[:3], axis=1).astype(np.float64)

    den = safe(va + vb + vc)
    v_in, w_in = vb / den, vc / den
    out = bary(1.0 - v_in - w_in, v_in, w_in)
    # Later assignments take priority, so the regions go from the last checked to the first.
    t = (d4 - d3) / safe((d4 - d3) + (d5 - d6))
    regions = [
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), bary(0.0, 1.0 - t, t)),       # edge BC
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), bary(1.0 - d2 / safe(d2 - d6), 0.0, d2 / safe(d2 - d6))),
        ((d6 >= 0) & (d5 <= d6), bary(0.0, 0.0, 1.0)),                               # vertex C
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), bary(1.0 - d1 / safe(d1 - d3), d1 / safe(d1 - d3), 0.0)),
        ((d3 >= 0) & (d4 <= d3), bary(0.0, 1.0, 0.0)),                               # vertex B
        ((d1 <= 0) & (d2 <= 0), bary(1.0, 0.0, 0.0)),                                # vertex A
    ]
    for mask, value in regions:
        out[mask] = value[mask]
    return out


def project_to_surface(mesh: ColoredMesh, points: np.ndarray, candidate_faces: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest surface point of each of ``points`` (Q, 3) among its candidate faces (Q, C).

    With candidates = the faces of the nearest dense surface samples this is the closest point on the
    mesh whenever the true closest face is among them (always, for samples much denser than the patch
    spacing). Returns (surface points (Q, 3), face (Q,), barycentric (Q, 3)).
    """
    q, c = candidate_faces.shape
    faces = candidate_faces.reshape(-1)
    rep = np.repeat(points, c, axis=0)
    tri = mesh.vertices[mesh.faces[faces]]
    bary = closest_on_triangles(tri, rep)
    foot = np.einsum("mk,mkj->mj", bary, tri)
    d2 = ((foot - rep) ** 2).sum(axis=1).reshape(q, c)
    best = np.argmin(d2, axis=1)
    pick = np.arange(q) * c + best
    return foot[pick], faces[pick], bary[pick]


def patches(mesh: ColoredMesh, samples: SurfaceSamples, m: int, k: int, spacing: float,
            rng: np.random.Generator, *, sigma: float = PIFU_COLOR_SIGMA, mode: str = "grid",
            weighting: str = "uniform", vnormals: np.ndarray | None = None, kdtree=None,
            ring: np.ndarray | None = None) -> Patches:
    """M patches of P = k*k GT surface points each, for the patch-wise SSIM loss (docs/training.md).

    Centres are area-uniform (drawn from the dense samples). ``mode="grid"``: a k x k grid with
    ``spacing`` in the centre's tangent plane (random in-plane rotation), each grid point moved to the
    surface by projecting it onto the face of its nearest dense sample; colours are interpolated there
    with :meth:`ColoredMesh.colors_at`. ``mode="nearest"``: the P dense samples nearest the centre
    (ordered by distance). One scalar N(0, sigma) normal offset is applied to every point of a patch.
    ``weighting="gaussian"`` weights points by exp(-d^2 / 2 (1.5 spacing)^2) of their distance d to the
    centre; ``"uniform"`` gives 1/P each.

    ``vnormals`` (:func:`vertex_normals`), ``kdtree`` (a ``cKDTree`` of ``samples.points``) and ``ring``
    (:func:`vertex_faces`) are per-subject constants; pass them to avoid rebuilding them per call.
    """
    if mode not in PATCH_MODES:
        raise InputError(f"patch mode must be one of {PATCH_MODES}, got {mode!r}")
    if weighting not in PATCH_WEIGHTINGS:
        raise InputError(f"patch weighting must be one of {PATCH_WEIGHTINGS}, got {weighting!r}")
    if k < 2 or m < 1:
        raise InputError(f"need patch size k >= 2 and at least one patch, got k={k}, m={m}")
    if kdtree is None:
        from scipy.spatial import cKDTree
        kdtree = cKDTree(samples.points)
    p = k * k
    ci = rng.integers(0, len(samples), m)
    centers = samples.points[ci].astype(np.float64)
    cnormals = samples.normals[ci].astype(np.float64)
    if mode == "grid":
        if vnormals is None:
            vnormals = vertex_normals(mesh)
        t1, t2 = tangent_frames(cnormals, rng)
        off = grid_offsets(k, spacing)
        grid = (centers[:, None, :] + off[None, :, 0:1] * t1[:, None, :]
                + off[None, :, 1:2] * t2[:, None, :]).reshape(-1, 3)
        if ring is None:
            ring = vertex_faces(mesh)
        _, nearest = kdtree.query(grid, k=CANDIDATES)
        near_faces = samples.face[nearest.reshape(len(grid), CANDIDATES)].astype(np.int64)
        pts, face, bary = project_to_surface(mesh, grid, near_faces)
        # Where the foot fell on a candidate's border, the true closest face may be a neighbour the
        # samples missed: try every face around the nearest sample's face as well.
        edge = (bary <= 1e-9).any(axis=1)
        if edge.any():
            one_ring = ring[mesh.faces[near_faces[edge, 0]]].reshape(int(edge.sum()), -1)
            one_ring = np.where(one_ring < 0, near_faces[edge, :1], one_ring)
            cand = np.concatenate([near_faces[edge], one_ring], axis=1)
            pts[edge], face[edge], bary[edge] = project_to_surface(mesh, grid[edge], cand)
        colors = mesh.colors_at(face, bary)
        normals = interpolated_normals(mesh, vnormals, face, bary)
        pts, colors, normals = (pts.reshape(m, p, 3), colors.reshape(m, p, 3), normals.reshape(m, p, 3))
    else:
        _, nearest = kdtree.query(centers, k=p)
        nearest = nearest.reshape(m, p)
        pts = samples.points[nearest].astype(np.float64)
        colors = samples.colors[nearest]
        normals = samples.normals[nearest].astype(np.float64)
    eps = rng.normal(0.0, sigma, (m, 1, 1)) if sigma > 0 else np.zeros((m, 1, 1))
    pts = pts + normals * eps
    if weighting == "uniform":
        weights = np.full((m, p), 1.0 / p)
    else:
        d2 = ((pts - centers[:, None, :]) ** 2).sum(axis=2)
        weights = np.exp(-d2 / (2.0 * (1.5 * spacing) ** 2))
        weights /= weights.sum(axis=1, keepdims=True)
    return Patches(points=pts.astype(np.float32), colors=np.asarray(colors, dtype=np.float32),
                   weights=weights.astype(np.float32), centers=centers.astype(np.float32))
