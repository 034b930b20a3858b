"""Mesh hygiene: find what makes a real-world mesh render or sample badly, and say what to do about it.

Game-style and exported characters often carry faults that an albedo render hides but any lit render
shows: garments stored twice with opposite winding (a "double-sided sheet": the two copies coincide, so
a shadow ray leaving one copy hits the other and the pixel goes black), patches with reversed winding,
file normals (per-corner / custom split normals) that point into the surface, zero-area faces, stray
vertices, NaN coordinates and out-of-range indices. :func:`inspect` finds all of them in one vectorised
pass and returns *decisions* (which faces to keep, which to flip, which corner normals to drop, which
vertices to keep) instead of a new mesh, so that each caller applies them with its own tools and keeps
its per-face and per-corner attributes (UVs, materials, colours) in step: the Blender renderer edits the
imported mesh with bmesh, the backend filters its trimesh geometry. One implementation decides for
both, so the dataset's GT mesh and what the backend loads from the same file agree.

Pure numpy (it runs inside Blender's own Python). Faces are an (F, K) index array; polygons with fewer
than K corners give their sizes in ``face_sizes`` (the padding values are ignored). See docs/dataset.md,
"Mesh hygiene".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

WELD_TOLERANCE = 1e-6
"""Positions closer than this fraction of the bounding-box diagonal count as one point for topology.

Exporters duplicate vertices at UV seams and for each copy of a double-sided sheet; topology (which
faces coincide, which faces are neighbours) must see through that."""

AREA_TOLERANCE = 1e-12
"""Faces whose area is below this fraction of the squared bounding-box diagonal have no area."""

INVERTED_SCORE = -0.2
"""A consistently wound component is turned inside out only when its normals point inward this clearly
(normalised score, -1 = every face points at the component's centre); flat sheets score near 0 and
keep the winding they have."""

_LABELS = {
    "out_of_range_faces": "removed {n} face(s) with out-of-range vertex indices",
    "non_finite_vertices": "removed {n} vertex(es) with NaN/inf coordinates",
    "non_finite_faces": "removed {n} face(s) using NaN/inf vertices",
    "degenerate_faces": "removed {n} zero-area face(s)",
    "duplicate_faces": "removed {n} coincident duplicate face(s)",
    "double_sided_faces": "removed {n} back copy(ies) of double-sided faces",
    "flipped_faces": "flipped {n} face(s) with inconsistent winding",
    "bad_normals": "replaced {n} file normal(s) pointing against their face",
    "unreferenced_vertices": "removed {n} unreferenced vertex(es)",
}


@dataclass
class Hygiene:
    """The decisions for one mesh; boolean masks over the input's faces, corners and vertices."""

    keep_faces: np.ndarray  # (F,) bool
    flip_faces: np.ndarray  # (F,) bool, only ever True for kept faces
    keep_vertices: np.ndarray  # (V,) bool: referenced by a kept face
    bad_corner_normals: np.ndarray | None  # (F, K) bool, only where corner normals were given
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # set when nothing usable is left: the mesh cannot be repaired

    def actions(self) -> list[str]:
        """One short sentence per repair made (empty for a clean mesh)."""
        return [_LABELS[k].format(n=v) for k, v in self.counts.items() if v]

    def to_dict(self) -> dict[str, Any]:
        """What records store: counts and sentences (the masks are the caller's business)."""
        return {"counts": {k: int(v) for k, v in self.counts.items() if v}, "actions": self.actions(),
                **({"error": self.error} if self.error else {})}

    def apply(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Triangles only: (new faces, kept face indices, new index of every old vertex or -1).

        Flipped faces swap their last two corners, so corner 0 stays corner 0.
        """
        faces = np.asarray(faces, dtype=np.int64)
        kept = np.flatnonzero(self.keep_faces)
        out = faces[kept].copy()
        flip = self.flip_faces[kept]
        out[flip] = out[flip][:, [0, 2, 1]]
        remap = np.full(len(self.keep_vertices), -1, dtype=np.int64)
        remap[self.keep_vertices] = np.arange(int(self.keep_vertices.sum()))
        return remap[out], kept, remap


def merge_counts(reports: list[Hygiene]) -> dict[str, int]:
    """Summed counts of several meshes (one subject's objects)."""
    total: dict[str, int] = {}
    for r in reports:
        for k, v in r.counts.items():
            total[k] = total.get(k, 0) + int(v)
    return {k: v for k, v in total.items() if v}


def describe(counts: dict[str, int]) -> list[str]:
    """The sentences of :meth:`Hygiene.actions` for summed counts."""
    return [_LABELS[k].format(n=v) for k, v in counts.items() if v and k in _LABELS]


def inspect(vertices: np.ndarray, faces: np.ndarray, *, face_sizes: np.ndarray | None = None,
            corner_normals: np.ndarray | None = None, weld_tolerance: float = WELD_TOLERANCE,
            area_tolerance: float = AREA_TOLERANCE) -> Hygiene:
    """Decide the repairs of one mesh.

    Args:
        vertices: (V, 3) positions (any units).
        faces: (F, K) vertex indices; K = 3 for triangles.
        face_sizes: (F,) corner counts of polygons padded to K; None when every face has K corners.
        corner_normals: (F, K, 3) file normals per face corner, or None.
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64)
    if f.ndim != 2 or (len(f) and f.shape[1] < 3):
        f = f.reshape(-1, 3)
    n_v, (n_f, k) = len(v), f.shape
    sizes = np.full(n_f, k, dtype=np.int64) if face_sizes is None else np.asarray(face_sizes, np.int64)
    present = np.arange(k)[None, :] < sizes[:, None]  # (F, K) real corners
    counts = {key: 0 for key in _LABELS}

    finite_v = np.isfinite(v).all(axis=1)
    counts["non_finite_vertices"] = int((~finite_v).sum())
    in_range = ((f >= 0) & (f < n_v)) | ~present
    bad_index = ~in_range.all(axis=1) | (sizes < 3)
    counts["out_of_range_faces"] = int(bad_index.sum())
    fs = np.where(present & in_range, f, 0)  # safe indices; padding -> corner 0 below
    fs = np.where(present, fs, fs[:, :1])
    non_finite = ~bad_index & ~finite_v[fs].all(axis=1) if n_v else ~bad_index
    counts["non_finite_faces"] = int(non_finite.sum())
    alive = ~bad_index & ~non_finite

    good_v = v[finite_v]
    if len(good_v):
        lo, hi = good_v.min(axis=0), good_v.max(axis=0)
        diag = float(np.linalg.norm(hi - lo)) or 1.0
    else:
        lo, diag = np.zeros(3), 1.0
    # Welded ids: one id per distinct position (within the tolerance); topology uses these.
    q = np.zeros((n_v, 3), dtype=np.int64)
    q[finite_v] = np.rint((good_v - lo) / (diag * weld_tolerance)).astype(np.int64)
    q[~finite_v] = -1 - np.arange(int((~finite_v).sum()))[:, None]  # never weld non-finite vertices
    wid = _unique_rows(q)[1]
    w = wid[fs] if n_v else np.zeros_like(fs)

    # Newell normal (2 x area x unit normal) by a fan from corner 0; padded corners repeat corner 0.
    p = np.where(finite_v[fs][..., None], v[fs], 0.0) if n_v else np.zeros((n_f, k, 3))
    rel = p - p[:, :1]
    normal2 = np.cross(rel[:, :-1], rel[:, 1:]).sum(axis=1) if k > 2 else np.zeros((n_f, 3))
    area2 = np.linalg.norm(normal2, axis=1)
    ws = np.sort(np.where(present, w, -1), axis=1)
    repeated = ((ws[:, 1:] == ws[:, :-1]) & (ws[:, 1:] >= 0)).any(axis=1)
    degenerate = alive & (repeated | (area2 <= 2.0 * area_tolerance * diag * diag))
    counts["degenerate_faces"] = int(degenerate.sum())
    alive &= ~degenerate

    # Coincident faces: the same welded corners in any order (either winding); keep the first.
    idx = np.flatnonzero(alive)
    keep = np.zeros(n_f, dtype=bool)
    if len(idx):
        keys = np.concatenate([sizes[idx, None], ws[idx]], axis=1)
        first, inverse = _unique_rows(keys)
        keeper = idx[first][inverse]  # the kept face of each alive face's group
        keep[idx[first]] = True
        dropped = idx[keeper != idx]
        opposite = (normal2[dropped] * normal2[keeper[keeper != idx]]).sum(axis=1) < 0
        counts["double_sided_faces"] = int(opposite.sum())
        counts["duplicate_faces"] = int((~opposite).sum())

    flip = np.zeros(n_f, dtype=bool)
    kept = np.flatnonzero(keep)
    if len(kept):
        flip[kept] = _orient(w[kept], present[kept], normal2[kept], p[kept], sizes[kept])
    counts["flipped_faces"] = int(flip.sum())

    bad_normals = None
    if corner_normals is not None:
        cn = np.asarray(corner_normals, dtype=np.float64).reshape(n_f, k, 3)
        facing = np.where(flip[:, None], -normal2, normal2)
        dot = (cn * facing[:, None, :]).sum(axis=2)
        finite_n = np.isfinite(cn).all(axis=2)
        bad_normals = keep[:, None] & present & (~finite_n | (dot < 0) | ~np.isfinite(dot))
        counts["bad_normals"] = int(bad_normals.sum())

    keep_v = np.zeros(n_v, dtype=bool)
    if len(kept):
        keep_v[f[kept][present[kept]]] = True
    counts["unreferenced_vertices"] = int(n_v - keep_v.sum() - (~finite_v & ~keep_v).sum())
    counts = {key: val for key, val in counts.items() if val}
    error = None
    if not len(kept):
        reasons = ", ".join(_LABELS[key].format(n=val).replace("removed ", "")
                            for key, val in counts.items() if key.endswith("faces")) or "it has no faces"
        error = (f"no usable faces left ({reasons})" if n_f else "it has no faces")
        if n_v and not finite_v.any():
            error = "every vertex coordinate is NaN or inf"
    return Hygiene(keep, flip, keep_v, bad_normals, counts, error)


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first occurrence of each distinct row, group of every row) of an int (N, C) array.

    ``np.unique(axis=0)`` sorts rows as opaque bytes and is several times slower; a stable lexsort keeps
    equal rows in input order, so the first of each run is the first occurrence.
    """
    if not len(rows):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort(rows.T[::-1])
    ranked = rows[order]
    start = np.r_[True, (ranked[1:] != ranked[:-1]).any(axis=1)]
    inverse = np.empty(len(rows), dtype=np.int64)
    inverse[order] = np.cumsum(start) - 1
    return order[start], inverse


def _orient(w: np.ndarray, present: np.ndarray, normal2: np.ndarray, points: np.ndarray,
            sizes: np.ndarray) -> np.ndarray:
    """Which of these (deduplicated) faces to flip so each connected sheet is wound consistently.

    Faces are neighbours across an edge that exactly two faces share; the pair is consistent when they
    traverse it in opposite directions. :func:`_signed_components` gives every face a parity relative to
    its component's root: the larger-area parity is right, and a whole component is inverted only when
    it is clearly inside out.
    """
    n, k = w.shape
    nxt = np.where(np.arange(k)[None, :] + 1 < sizes[:, None], np.arange(1, k + 1)[None, :] % k, 0)
    a = w
    b = np.take_along_axis(w, nxt, axis=1)
    face = np.broadcast_to(np.arange(n)[:, None], (n, k))
    sel = present
    a, b, face = a[sel], b[sel], face[sel]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    forward = a < hi  # direction along the undirected edge
    order = np.lexsort((hi, lo))
    lo, hi, forward, face = lo[order], hi[order], forward[order], face[order]
    start = np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])]
    group = np.cumsum(start) - 1
    size = np.bincount(group)
    pair = size[group] == 2
    firsts = np.flatnonzero(start & pair)
    fa, fb = face[firsts], face[firsts + 1]
    inconsistent = (forward[firsts] == forward[firsts + 1]).astype(np.int64)  # same direction: flip one
    label, parity = _signed_components(n, fa, fb, inconsistent)
    area = np.linalg.norm(normal2, axis=1)
    _, comp = np.unique(label, return_inverse=True)
    comp = comp.reshape(-1)
    n_c = int(comp.max()) + 1 if n else 0
    area_odd = np.bincount(comp, weights=area * parity, minlength=n_c)
    area_all = np.bincount(comp, weights=area, minlength=n_c)
    wrong = (area_odd > area_all - area_odd).astype(np.int64)  # per component: which parity is wrong
    flip = (parity ^ wrong[comp]).astype(bool)
    # Inside-out test on the consistent result: normals against the direction from the centre.
    sign = np.where(flip, -1.0, 1.0)[:, None]
    centroid = (points * present[..., None]).sum(axis=1) / np.maximum(sizes, 1)[:, None]
    centre = np.stack([np.bincount(comp, weights=centroid[:, i] * area, minlength=n_c) for i in range(3)],
                      axis=1) / np.maximum(area_all, 1e-300)[:, None]
    out = centroid - centre[comp]
    term = (sign * normal2 * out).sum(axis=1)
    scale = np.linalg.norm(out, axis=1) * area
    score = np.bincount(comp, weights=term, minlength=n_c) / np.maximum(
        np.bincount(comp, weights=scale, minlength=n_c), 1e-300)
    inside_out = score < INVERTED_SCORE
    return flip ^ inside_out[comp]


def _signed_components(n: int, a: np.ndarray, b: np.ndarray,
                       odd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of n nodes joined by edges (a, b), each with a parity: ``odd`` edges join
    nodes of opposite parity. Returns (root per node, parity relative to the root).

    A vectorised union-find: every round hooks each root onto the smallest root it touches (so no cycle
    can form), then path jumping flattens the trees; rounds stay few on meshes (about log n), where a
    label spreading face by face would need as many rounds as the mesh is wide.
    """
    parent = np.arange(n, dtype=np.int64)
    parity = np.zeros(n, dtype=np.int64)
    big = np.iinfo(np.int64).max
    while True:
        while True:  # flatten: every node points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parity = parity ^ parity[parent]
            parent = grand
        ra, rb = parent[a], parent[b]
        apart = ra != rb
        if not apart.any():
            return parent, parity
        ra, rb = ra[apart], rb[apart]
        rel = odd[apart] ^ parity[a[apart]] ^ parity[b[apart]]  # parity of one root relative to the other
        hi, lo = np.maximum(ra, rb), np.minimum(ra, rb)
        best = np.full(n, big, dtype=np.int64)
        np.minimum.at(best, hi, lo * 2 + rel)
        hooked = best < big
        parent[hooked] = best[hooked] >> 1
        parity[hooked] = best[hooked] & 1
