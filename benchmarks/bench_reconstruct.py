"""Benchmark: PIFu reconstruction at resolution 256 on this machine, full-size nets.

Compares, in one run and on one image:
  * avatex: its encode (NHWC on the CPU), surface-tracking coarse-to-fine grid (backend.recon.grid),
    pre-projected MLP, inference_mode, its default chunk (1k points on the CPU);
  * the official pipeline: NCHW encode under no_grad, the official octree schedule (start 64, threshold
    0.01, 10k-point batches, plain MLP, as docs/models.md describes it; re-implemented vectorised,
    so its Python-loop overhead, ~3-5 s in the official code, is NOT charged to it: the baseline is
    favoured);
  * dense evaluation of every grid point (official eval_grid: plain MLP, 10k batches), whose network
    cost is measured on a sample of points and extrapolated to all R^3 points (a full run would take
    many minutes here).

Occupancy: random weights give a field that crosses 0.5 everywhere (docs/models.md), so, like
the reference measurement, every queried point pays the real full-size network cost (its output is
discarded) while the occupancy *value* comes from a trained-like analytic body field
(backend.recon.analytic: sigmoid(-200 sdf) of capsules/ellipsoids with fingers, a ponytail and a thin
cane), precomputed on the dense lattice and looked up. Colours: the real colour net at every vertex of
each schedule's mesh (official: plain MLP in 10k chunks; avatex: its default path).

Mesh equality: Chamfer distance (mean and max, in voxels) of each mesh to the dense mesh, and the
inside/outside agreement of the grids. Timings are best-of-N with runs interleaved, because the
machine is shared; the load average is reported.

    .venv/bin/python benchmarks/bench_reconstruct.py [--resolution 256] [--repeats 2] [--chunk N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatex_core import canonical  # noqa: E402
from backend.models import ModelConfig, PIFu  # noqa: E402
from backend.recon.analytic import body_image, body_occupancy  # noqa: E402
from backend.recon.framing import frame_subject  # noqa: E402
from backend.recon.grid import (  # noqa: E402
    GridSpec,
    evaluate_coarse_to_fine,
    evaluate_dense,
    evaluate_octree_official,
)
from backend.recon.mesh import extract_surface  # noqa: E402
from backend.recon.pipeline import default_chunk, fast_pays  # noqa: E402


def load() -> float:
    return round(os.getloadavg()[0], 2)


def chamfer_voxels(a: np.ndarray, b: np.ndarray, voxel: float) -> dict:
    da = cKDTree(b).query(a)[0]
    db = cKDTree(a).query(b)[0]
    return {"mean": round(0.5 * (da.mean() + db.mean()) / voxel, 4),
            "max": round(max(da.max(), db.max()) / voxel, 3)}


class Hybrid:
    """Occupancy function: real network cost on every point, analytic value from a lookup table
    (or, without a table, from the analytic field itself)."""

    def __init__(self, model: PIFu, calib: torch.Tensor, table: np.ndarray | None, spec: GridSpec,
                 fast: bool):
        self.model, self.calib, self.table, self.spec, self.fast = model, calib, table, spec, fast
        self.device = calib.device
        self.net_seconds = 0.0

    def __call__(self, points: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        pts = torch.from_numpy(points).to(self.device).t().unsqueeze(0)
        self.model.query_occupancy(pts, self.calib, fast=self.fast)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.net_seconds += time.perf_counter() - t
        if self.table is None:
            return body_occupancy(points, sharpness=200.0)
        idx = np.rint((points - np.asarray(self.spec.b_min)) / self.spec.spacing).astype(np.int64)
        return self.table[idx[:, 0], idx[:, 1], idx[:, 2]]


def color_pass(model: PIFu, vertices: np.ndarray, calib: torch.Tensor, chunk: int, fast: bool) -> float:
    t = time.perf_counter()
    for s in range(0, len(vertices), chunk):  # every vertex, the last one included
        pts = torch.from_numpy(vertices[s:s + chunk]).to(calib.device).t().unsqueeze(0)
        model.query_color(pts, calib, fast=fast).cpu()
    return time.perf_counter() - t


def dense_sample_cost(model: PIFu, calib: torch.Tensor, table: np.ndarray, spec: GridSpec,
                      count: int) -> float:
    """Seconds per point of the official dense path (plain MLP, 10k batches) on ``count`` grid points
    taken in the official eval_grid order (consecutive C-order indices) from a few places in the box."""
    r = spec.resolution
    fn = Hybrid(model, calib, table, spec, fast=False)
    starts = np.linspace(0, r ** 3 - 10000, max(1, count // 10000)).astype(np.int64)
    with torch.no_grad():
        for s in starts:
            flat = np.arange(s, s + 10000)
            idx = np.stack(np.unravel_index(flat, (r, r, r)), 1)
            fn(spec.to_coords(idx).astype(np.float32))
    return fn.net_seconds / (len(starts) * 10000)


def device_sweep(model: PIFu, device: str, resolutions: list[int], chunk: int) -> list[dict]:
    """avatex's grid + marching cubes + colours on ``device`` at several resolutions (hybrid field
    evaluated directly, no lookup table)."""
    model.to(device)
    size = model.config.load_size  # 512 for the official nets
    framed = frame_subject(body_image(size), size=size)
    img = torch.from_numpy(framed.network_input()).to(device)
    calib = torch.from_numpy(canonical.calib_for_view(0.0)).float()[None].to(device)
    rows = []
    with torch.inference_mode():
        t = time.perf_counter()
        model.encode(img)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        encode = time.perf_counter() - t
        for r in resolutions:
            model.net_g._projected = None
            model.net_c._projected = None
            spec = GridSpec(r)
            fn = Hybrid(model, calib, None, spec, fast=True)
            t = time.perf_counter()
            grid = evaluate_coarse_to_fine(fn, spec, batch_size=chunk)
            verts, _ = extract_surface(grid.volume, spec)
            grid_mc = time.perf_counter() - t
            color = color_pass(model, verts, calib, chunk, True)
            rows.append({"device": device, "resolution": r, "encode_seconds": round(encode, 3),
                         "grid_plus_mc_seconds": round(grid_mc, 3), "net_seconds": round(fn.net_seconds, 3),
                         "color_seconds": round(color, 3), "points": grid.points_evaluated,
                         "vertices": len(verts)})
    model.to("cpu")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2, help="best-of-N for the timed schedules")
    ap.add_argument("--chunk", type=int, default=default_chunk(torch.device("cpu")),
                    help="avatex points per network call (default: the pipeline's CPU default)")
    ap.add_argument("--dense-sample", type=int, default=50000, help="points timed for dense extrapolation")
    ap.add_argument("--sweep-device", default=None,
                    help="also time avatex on this device at --sweep resolutions (default: cuda if present)")
    ap.add_argument("--sweep", type=int, nargs="*", default=[256, 512])
    args = ap.parse_args()
    r = args.resolution
    torch.manual_seed(0)
    notes = []
    out: dict = {"benchmark": "reconstruct", "resolution": r, "threads": torch.get_num_threads(),
                 "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                 "load_start": load()}

    model = PIFu(ModelConfig.official()).eval()  # full size: 15.6M + 9.1M parameters, official init
    out["parameters"] = {"net_g": sum(p.numel() for p in model.net_g.parameters()),
                         "net_c": sum(p.numel() for p in model.net_c.parameters())}
    framed = frame_subject(body_image(512), size=512)
    img = torch.from_numpy(framed.network_input())
    calib = torch.from_numpy(canonical.calib_for_view(0.0)).float()[None]
    spec = GridSpec(r)
    voxel = float(spec.spacing[0])

    # reference field and mesh: analytic body on every lattice point
    t = time.perf_counter()
    dense_field = evaluate_dense(lambda p: body_occupancy(p, sharpness=200.0), spec, batch_size=1 << 20)
    v_dense, f_dense = extract_surface(dense_field.volume, spec)
    out["reference"] = {"field": "sigmoid(-200 sdf) analytic body", "vertices": len(v_dense),
                        "seconds_to_build": round(time.perf_counter() - t, 2)}
    table = dense_field.volume

    runs: dict[str, list[dict]] = {"avatex": [], "official": []}
    dense_costs = []
    for rep in range(args.repeats):
        for name in ("official", "avatex") if rep % 2 == 0 else ("avatex", "official"):
            row: dict = {"load": load()}
            if name == "avatex":
                with torch.inference_mode():
                    t = time.perf_counter()
                    model.encode(img)  # NHWC on the CPU; projections reset, charged below
                    row["encode_seconds"] = time.perf_counter() - t
                    fn = Hybrid(model, calib, table, spec, fast=True)
                    t = time.perf_counter()
                    grid = evaluate_coarse_to_fine(fn, spec, batch_size=args.chunk)
                    row["grid_seconds"] = time.perf_counter() - t
                    t = time.perf_counter()
                    verts, faces = extract_surface(grid.volume, spec)
                    row["mc_seconds"] = time.perf_counter() - t
                    fast_c = fast_pays(model.net_c.surface_classifier, 128 * 128, len(verts))
                    row["color_seconds"] = color_pass(model, verts, calib, args.chunk, fast_c)
                    row["color_fast_path"] = fast_c
                    agree = np.mean((grid.volume >= 0.5) == (table >= 0.5))
            else:
                with torch.no_grad():
                    t = time.perf_counter()
                    model.encode(img, channels_last=False)
                    row["encode_seconds"] = time.perf_counter() - t
                    fn = Hybrid(model, calib, table, spec, fast=False)
                    t = time.perf_counter()
                    grid = evaluate_octree_official(fn, spec, init_resolution=64, threshold=0.01,
                                                    batch_size=10000)
                    row["grid_seconds"] = time.perf_counter() - t
                    t = time.perf_counter()
                    verts, faces = extract_surface(grid.volume, spec)
                    row["mc_seconds"] = time.perf_counter() - t
                    row["color_seconds"] = color_pass(model, verts, calib, 10000, False)
                    agree = np.mean((grid.volume >= 0.5) == (table[:r, :r, :r] >= 0.5))
                    # dense evaluation's cost, on the same NCHW features
                    dense_costs.append(dense_sample_cost(model, calib, table, spec, args.dense_sample))
            row["net_seconds"] = fn.net_seconds
            row["points"] = grid.points_evaluated
            row["us_per_point"] = round(1e6 * fn.net_seconds / grid.points_evaluated, 2)
            row["vertices"] = len(verts)
            row["chamfer_to_dense_voxels"] = chamfer_voxels(verts, v_dense, voxel)
            row["inside_outside_agreement"] = round(float(agree), 7)
            row["levels"] = [lv["points"] for lv in grid.levels]
            row["grid_plus_mc_seconds"] = row["grid_seconds"] + row["mc_seconds"]
            row["end_to_end_seconds"] = (row["encode_seconds"] + row["grid_plus_mc_seconds"]
                                         + row["color_seconds"])
            for k in ("encode_seconds", "grid_seconds", "mc_seconds", "grid_plus_mc_seconds", "color_seconds",
                      "net_seconds", "end_to_end_seconds"):
                row[k] = round(row[k], 3)
            runs[name].append(row)
            print(f"# {name} run {rep + 1}: {row['end_to_end_seconds']:.1f} s end to end, "
                  f"{row['grid_seconds']:.1f} s grid, {row['points']} points, load {row['load']}",
                  file=sys.stderr)

    def best(rows: list[dict]) -> dict:
        b = dict(min(rows, key=lambda x: x["end_to_end_seconds"]))
        for k in ("end_to_end_seconds", "encode_seconds", "grid_seconds", "color_seconds"):
            b[f"all_{k}"] = [x[k] for x in rows]
        return b

    ours, official = best(runs["avatex"]), best(runs["official"])
    out["avatex"] = ours
    out["official_schedule"] = official

    per_point = min(dense_costs)
    t = time.perf_counter()
    extract_surface(table[:r, :r, :r], spec)
    mc_dense = time.perf_counter() - t
    dense_points = r ** 3
    out["dense"] = {"points": dense_points, "us_per_point_measured": round(1e6 * per_point, 2),
                    "us_per_point_all": [round(1e6 * c, 2) for c in dense_costs],
                    "sample_points": args.dense_sample, "grid_plus_mc_seconds_extrapolated":
                    round(per_point * dense_points + mc_dense, 1), "mesh": "the reference mesh (chamfer 0)"}
    notes.append(f"dense seconds are extrapolated: {args.dense_sample} points in eval_grid order timed "
                 f"(best of {len(dense_costs)}), scaled to {dense_points}")

    def ratio(key: str) -> float:
        return round(official[key] / ours[key], 2)

    out["ratios"] = {
        "points_official_over_avatex": ratio("points"),
        "encode_official_over_avatex": ratio("encode_seconds"),
        "grid_plus_mc_official_over_avatex": ratio("grid_plus_mc_seconds"),
        "end_to_end_official_over_avatex": ratio("end_to_end_seconds"),
        "per_point_plain_over_fast": round(official["us_per_point"] / ours["us_per_point"], 2),
        "color_official_over_avatex": round(official["color_seconds"] / max(ours["color_seconds"], 1e-9), 2),
        "dense_over_avatex_grid_plus_mc": round(out["dense"]["grid_plus_mc_seconds_extrapolated"]
                                                / ours["grid_plus_mc_seconds"], 1),
    }
    notes.append("end_to_end = each side's own encode (avatex NHWC, official NCHW) + grid + marching cubes "
                 "+ colours, timed in the same run; best run by end-to-end time")
    notes.append("occupancy values from the analytic body (lookup); every queried point runs the real net")
    notes.append("official schedule re-implemented vectorised: its Python loop (~3-5 s) is not charged")
    sweep_device = args.sweep_device or ("cuda" if torch.cuda.is_available() else None)
    if sweep_device is not None:
        out["device_sweep"] = device_sweep(model, sweep_device, args.sweep, 65536 if "cuda" in sweep_device
                                           else args.chunk)
    else:
        notes.append("no GPU here: the 256/512 GPU sweep (--sweep-device cuda) was not run")
    out["load_end"] = load()
    out["notes"] = notes
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
