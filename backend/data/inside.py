"""Inside/outside labels that stay right on scans with holes: generalised winding numbers.

Ray parity (``trimesh``'s ``contains``) flips labels wherever a ray slips through a hole, and real scans
are rarely watertight (open sleeves, hair cards, cut-off feet). The generalised winding number of
Jacobson et al. (SIGGRAPH 2013) is the signed solid angle the surface subtends at a point divided by 4π:
exactly 1 inside and 0 outside a closed, outward-oriented mesh, and a smooth value in between near holes,
so thresholding at 1/2 degrades gracefully instead of flipping whole regions.

The exact sum costs O(points x faces). :func:`winding_numbers` uses the hierarchy of Barill et al.
("Fast winding numbers", SIGGRAPH 2018): faces are grouped in a bounding-volume tree; a group far from
the query point (distance > ``beta`` x its radius) is replaced by its dipole term (the sum of its area
vectors placed at its area-weighted centroid); groups near the point are refined down to leaves, whose
triangles are summed exactly. The traversal is vectorised over (point, node) pairs level by level, and
the queries are processed in chunks so memory stays bounded. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend import triangles

_FOUR_PI = 4.0 * np.pi


def solid_angles(tri: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Signed solid angle / 4π of triangles ``tri`` (K, 3, 3) seen from ``points`` (K, 3), pairwise.

    Van Oosterom & Strackee's formula; positive when the triangle is counter-clockwise seen from the
    point's side opposite its normal (i.e. the point is behind an outward face).
    """
    a = tri[:, 0] - points
    b = tri[:, 1] - points
    c = tri[:, 2] - points
    la = np.sqrt(np.einsum("ij,ij->i", a, a))
    lb = np.sqrt(np.einsum("ij,ij->i", b, b))
    lc = np.sqrt(np.einsum("ij,ij->i", c, c))
    det = np.einsum("ij,ij->i", a, np.cross(b, c))
    den = (la * lb * lc + np.einsum("ij,ij->i", a, b) * lc + np.einsum("ij,ij->i", b, c) * la
           + np.einsum("ij,ij->i", c, a) * lb)
    return np.arctan2(det, den) * (2.0 / _FOUR_PI)


def winding_numbers_exact(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
                          chunk_pairs: int = 2_000_000) -> np.ndarray:
    """Exact generalised winding numbers (Q,) by the full sum over faces; the reference for tests."""
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    out = np.zeros(len(points))
    step = max(1, chunk_pairs // max(1, len(tri)))
    for s in range(0, len(points), step):
        q = points[s:s + step]
        qq = np.repeat(q, len(tri), axis=0)
        tt = np.tile(tri, (len(q), 1, 1))
        out[s:s + step] = solid_angles(tt, qq).reshape(len(q), len(tri)).sum(axis=1)
    return out


@dataclass(frozen=True)
class WindingTree:
    """A bounding-volume hierarchy over the faces of a mesh with each node's dipole moment.

    Node ``i`` covers ``order[start[i]:end[i]]``; ``left``/``right`` are -1 at leaves.
    """

    tri: np.ndarray  # (F, 3, 3) float64, in tree order
    start: np.ndarray
    end: np.ndarray
    left: np.ndarray
    right: np.ndarray
    center: np.ndarray  # (nodes, 3) area-weighted centroid
    radius: np.ndarray  # (nodes,) max distance from center to a vertex of the node's faces
    dipole: np.ndarray  # (nodes, 3) sum of the faces' area vectors (0.5 * cross)


def build_tree(vertices: np.ndarray, faces: np.ndarray, leaf_size: int = 16) -> WindingTree:
    """Median-split BVH over face centroids along the longest axis of each node."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"need an (F>0, 3) face array, got shape {faces.shape}")
    tri = vertices[faces]
    centroid = tri.mean(axis=1)
    order = np.arange(len(faces))
    starts, ends, lefts, rights = [0], [len(faces)], [-1], [-1]
    stack = [0]
    while stack:
        node = stack.pop()
        s, e = starts[node], ends[node]
        if e - s <= leaf_size:
            continue
        idx = order[s:e]
        c = centroid[idx]
        axis = int(np.argmax(c.max(axis=0) - c.min(axis=0)))
        mid = (e - s) // 2
        part = np.argpartition(c[:, axis], mid)
        order[s:e] = idx[part]
        for lo, hi in ((s, s + mid), (s + mid, e)):
            starts.append(lo)
            ends.append(hi)
            lefts.append(-1)
            rights.append(-1)
            stack.append(len(starts) - 1)
        lefts[node], rights[node] = len(starts) - 2, len(starts) - 1
    tri = tri[order]
    start = np.asarray(starts, dtype=np.int64)
    end = np.asarray(ends, dtype=np.int64)
    area_vec = 0.5 * triangles.edge_cross(tri)
    area = np.linalg.norm(area_vec, axis=1)
    cen = tri.mean(axis=1)

    def range_sum(values: np.ndarray) -> np.ndarray:
        prefix = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
        return prefix[end] - prefix[start]

    dipole = range_sum(area_vec)
    total_area = range_sum(area)
    count = (end - start).astype(np.float64)
    weighted = range_sum(cen * area[:, None])
    plain = range_sum(cen)
    center = np.where(total_area[:, None] > 0, weighted / np.maximum(total_area, 1e-300)[:, None],
                      plain / count[:, None])
    # Radius: max distance from the node centre to any corner of its faces. Children are computed from
    # the faces directly; the loop is O(F log F) over contiguous ranges.
    radius = np.empty(len(start))
    for i in range(len(start)):
        corners = tri[start[i]:end[i]].reshape(-1, 3)
        radius[i] = np.sqrt(((corners - center[i]) ** 2).sum(axis=1).max())
    return WindingTree(tri=tri, start=start, end=end, left=np.asarray(lefts, dtype=np.int64),
                       right=np.asarray(rights, dtype=np.int64), center=center, radius=radius,
                       dipole=dipole)


def winding_numbers(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, *,
                    tree: WindingTree | None = None, beta: float = 2.5, chunk: int = 8192,
                    pair_chunk: int = 1_000_000) -> np.ndarray:
    """Generalised winding numbers (Q,) of ``points`` (Q, 3) w.r.t. a triangle mesh, fast.

    ``beta`` is the far-field acceptance ratio (distance / node radius); larger is more exact and
    slower. Points on or very near the surface always get exact leaf sums.
    """
    if tree is None:
        tree = build_tree(vertices, faces)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    out = np.zeros(len(points))
    for s in range(0, len(points), chunk):
        out[s:s + chunk] = _winding_chunk(tree, points[s:s + chunk], beta, pair_chunk)
    return out


def _winding_chunk(tree: WindingTree, q: np.ndarray, beta: float, pair_chunk: int) -> np.ndarray:
    n = len(q)
    w = np.zeros(n)
    qi = np.arange(n)
    ni = np.zeros(n, dtype=np.int64)
    is_leaf = tree.left < 0
    while qi.size:
        d = tree.center[ni] - q[qi]
        dist = np.sqrt(np.einsum("ij,ij->i", d, d))
        far = dist > beta * tree.radius[ni]
        if far.any():
            df, nf = d[far], ni[far]
            val = np.einsum("ij,ij->i", df, tree.dipole[nf]) / (_FOUR_PI * dist[far] ** 3)
            w += np.bincount(qi[far], weights=val, minlength=n)
        near = ~far
        leaf = near & is_leaf[ni]
        if leaf.any():
            w += _leaf_sums(tree, q, qi[leaf], ni[leaf], n, pair_chunk)
        inner = near & ~is_leaf[ni]
        qn = qi[inner]
        nn = ni[inner]
        qi = np.concatenate([qn, qn])
        ni = np.concatenate([tree.left[nn], tree.right[nn]])
    return w


def _leaf_sums(tree: WindingTree, q: np.ndarray, qi: np.ndarray, ni: np.ndarray, n: int,
               pair_chunk: int) -> np.ndarray:
    """Exact solid-angle sums of every (point, leaf) pair, expanded to (point, face) pairs in chunks."""
    counts = tree.end[ni] - tree.start[ni]
    w = np.zeros(n)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    s = 0
    while s < len(qi):
        # Take as many pairs as fit in pair_chunk face evaluations (at least one).
        e = max(s + 1, int(np.searchsorted(bounds, bounds[s] + pair_chunk, side="right")) - 1)
        c = counts[s:e]
        rep_q = np.repeat(qi[s:e], c)
        ramp = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        face = np.repeat(tree.start[ni[s:e]], c) + ramp
        w += np.bincount(rep_q, weights=solid_angles(tree.tri[face], q[rep_q]), minlength=n)
        s = e
    return w


def inside(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, *,
           tree: WindingTree | None = None, threshold: float = 0.5) -> np.ndarray:
    """Boolean (Q,): generalised winding number above ``threshold`` (1/2 by default)."""
    return winding_numbers(vertices, faces, points, tree=tree) > threshold
