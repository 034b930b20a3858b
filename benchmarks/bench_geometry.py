"""Benchmark: point-to-surface distances of a game-style character, both directions, on the CPU.

    .venv/bin/python benchmarks/bench_geometry.py [--samples 100000] [--repeats 2] [--old-samples 4000]

The meshes are ``tests/helpers/game_character.py``'s character (a fixture avatar with a few huge triangles,
over 100x the median edge, and every face duplicated in reverse winding; ~12k vertices, ~49k faces)
and a jittered copy of it, the case of the issue where ``avatex evaluate`` spent 78 s in the geometry
metrics. ``--samples`` area-uniform samples are drawn on each mesh once; every variant measures the
same samples against the other mesh:

* ``avatex``: ``backend.metrics.geometry.point_to_surface`` (libigl's AABB tree, Morton-ordered queries);
* ``igl_direct``: ``igl.point_mesh_squared_distance`` called plainly, in sample order;
* ``old``: the previous hand-written search, copied below as the baseline: a KD-tree on triangle
  centroids whose exactness bound is one global centroid-to-corner radius, so a few large triangles
  send almost every query back for more candidates, up to all faces. It is so slow on this mesh (over
  ten minutes for 100k samples) that it runs once, on the first ``--old-samples`` samples of each
  side, and its time is scaled linearly to ``--samples`` (its cost per query does not depend on the
  query count once every query needs all faces); its means are compared with ``avatex``'s on the same
  subsample.

Prints one JSON document: best wall time per variant, ratios against ``avatex``, and the largest
difference of the mean distances from ``avatex``'s. Timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import igl  # noqa: E402

from backend import triangles  # noqa: E402
from backend.meshio import ColoredMesh, sample_surface  # noqa: E402
from backend.metrics.geometry import point_to_surface  # noqa: E402
from backend.metrics.knn import morton_codes  # noqa: E402
from tests.helpers.game_character import edge_length_span, game_character, jittered  # noqa: E402

# ----------------------------------------------------------------- the old implementation (baseline)

_PAIRS_PER_CHUNK = 1 << 15


def old_point_to_surface(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                         candidates: int = 16) -> np.ndarray:
    """Distances by the previous search: centroid KD-tree candidates, doubled until provably exact."""
    if len(points) > 4096:
        order = np.argsort(morton_codes(points), kind="stable")
        d = np.empty(len(points))
        d[order] = _old_search(points[order], vertices, faces, candidates)
        return d
    return _old_search(points, vertices, faces, candidates)


def _old_search(points, vertices, faces, candidates):
    tri_all = vertices[faces]
    area2 = np.linalg.norm(triangles.edge_cross(tri_all), axis=1)
    tri = tri_all[area2 > 0]
    table = _TriangleTable(tri)
    centroids = tri.mean(axis=1)
    radius = float(np.linalg.norm(tri - centroids[:, None, :], axis=2).max())
    tree = cKDTree(centroids)
    n, f = len(points), len(tri)
    best_d2 = np.full(n, np.inf)
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
            d2 = table.squared_distances(points[sel], cand[start:start + rows])
            best_d2[sel] = d2.min(axis=1)
        if everything:
            break
        exact = np.sqrt(best_d2[pending]) <= cdist[:, -1] - radius
        pending = pending[~exact]
        kc = min(kc * 2, f)
    return np.sqrt(best_d2)


class _TriangleTable:
    def __init__(self, tri: np.ndarray) -> None:
        a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
        ab, ac, bc = b - a, c - a, c - b
        d00, d01, d11 = _dot(ab, ab), _dot(ab, ac), _dot(ac, ac)
        cols = [a[:, 0], a[:, 1], a[:, 2], ab[:, 0], ab[:, 1], ab[:, 2], ac[:, 0], ac[:, 1], ac[:, 2],
                bc[:, 0], bc[:, 1], bc[:, 2], d00, d01, d11, 1.0 / (d00 * d11 - d01 * d01),
                1.0 / d00, 1.0 / d11, 1.0 / _dot(bc, bc)]
        self.cols = np.ascontiguousarray(np.stack(cols))

    def squared_distances(self, points: np.ndarray, faces_idx: np.ndarray) -> np.ndarray:
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


def _dot(u, v):
    return np.einsum("ij,ij->i", u, v)


# ------------------------------------------------------------------------------------------ variants

def avatex(pred_pts, gt_pts, pv, pf, gv, gf):
    return point_to_surface(pred_pts, gv, gf)[0].mean(), point_to_surface(gt_pts, pv, pf)[0].mean()


def igl_direct(pred_pts, gt_pts, pv, pf, gv, gf):
    d_pg = igl.point_mesh_squared_distance(pred_pts, gv, gf)[0]
    d_gp = igl.point_mesh_squared_distance(gt_pts, pv, pf)[0]
    return np.sqrt(d_pg).mean(), np.sqrt(d_gp).mean()


def old(pred_pts, gt_pts, pv, pf, gv, gf):
    return old_point_to_surface(pred_pts, gv, gf).mean(), old_point_to_surface(gt_pts, pv, pf).mean()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100_000, help="surface samples per mesh (default 100k)")
    ap.add_argument("--repeats", type=int, default=2, help="rounds of the fast variants (best is kept)")
    ap.add_argument("--old-samples", type=int, default=4000,
                    help="samples per side the old implementation runs on (time scaled to --samples)")
    args = ap.parse_args(argv)
    gv, gf, gc = game_character()
    pv, _ = jittered(gv, gc)
    pf = gf
    rng = np.random.default_rng(0)
    pred_pts = sample_surface(ColoredMesh(vertices=pv, faces=pf), args.samples, rng)[0]
    gt_pts = sample_surface(ColoredMesh(vertices=gv, faces=gf), args.samples, rng)[0]
    load_before = os.getloadavg()
    best: dict[str, float] = {}
    means: dict[str, list[float]] = {}
    for round_ in range(args.repeats):
        names = ["avatex", "igl_direct"] if round_ % 2 == 0 else ["igl_direct", "avatex"]
        for name in names:
            t = time.perf_counter()
            m = globals()[name](pred_pts, gt_pts, pv, pf, gv, gf)
            seconds = time.perf_counter() - t
            best[name] = min(best.get(name, np.inf), seconds)
            means[name] = [float(x) for x in m]
            print(f"[{name}] {seconds:.2f} s  means {means[name]}", file=sys.stderr, flush=True)
    few = min(args.old_samples, args.samples)
    t = time.perf_counter()
    means["old_subsample"] = [float(x) for x in old(pred_pts[:few], gt_pts[:few], pv, pf, gv, gf)]
    old_seconds = time.perf_counter() - t
    best["old"] = old_seconds * args.samples / few
    means["avatex_subsample"] = [float(x) for x in avatex(pred_pts[:few], gt_pts[:few], pv, pf, gv, gf)]
    print(f"[old] {old_seconds:.2f} s on {few} samples per side -> {best['old']:.1f} s scaled",
          file=sys.stderr, flush=True)
    ref = np.array(means["avatex"])
    ref_few = np.array(means["avatex_subsample"])
    result = {
        "benchmark": "geometry",
        "mesh": {"vertices": len(gv), "faces": len(gf), "longest_over_median_edge": edge_length_span(gv, gf)},
        "samples_per_mesh": args.samples,
        "seconds": {k: round(v, 4) for k, v in best.items()},
        "ratio_old_vs_avatex": round(best["old"] / best["avatex"], 2),
        "ratio_igl_direct_vs_avatex": round(best["igl_direct"] / best["avatex"], 2),
        "old_measured": {"samples_per_mesh": few, "seconds": round(old_seconds, 3)},
        "means": means,
        "max_relative_mean_difference": {
            "igl_direct": float(np.max(np.abs(np.array(means["igl_direct"]) - ref) / ref)),
            "old": float(np.max(np.abs(np.array(means["old_subsample"]) - ref_few) / ref_few))},
        "cpus": len(os.sched_getaffinity(0)), "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
