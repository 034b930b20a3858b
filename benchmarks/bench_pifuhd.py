"""Benchmark: PIFuHD (1024² fine + 512² coarse level with normal nets) against PIFu (512²), full size.

One run, one image, the same machine state: each model frames the image at its input size, encodes it,
and answers every occupancy query of avatex's coarse-to-fine grid (backend.recon.grid) with its real
full-size network; the occupancy *value* comes from the analytic body field (backend.recon.analytic),
because random weights do not describe a body, so both models walk exactly the same grid points and
the comparison is of network cost alone (the same method as bench_reconstruct.py). PIFu uses its
default pre-projected MLP path; PIFuHD has none. Colours are not timed.

Reported per model: encode seconds, occupancy seconds, points evaluated, microseconds per point, total,
and the ratio to PIFu. Best of ``--repeats`` runs, interleaved.

    .venv/bin/python benchmarks/bench_pifuhd.py [--resolution 128] [--repeats 1] [--out FILE]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatex_core import canonical  # noqa: E402
from avatex_core.atomic import write_json  # noqa: E402
from backend.models import ModelConfig, PIFu  # noqa: E402
from backend.models.pifuhd import PIFuHD, release_options  # noqa: E402
from backend.recon.analytic import body_image, body_occupancy  # noqa: E402
from backend.recon.framing import frame_subject  # noqa: E402
from backend.recon.grid import GridSpec, evaluate_coarse_to_fine  # noqa: E402


def run_model(name: str, model, size: int, image: np.ndarray, spec: GridSpec, chunk: int) -> dict:
    """Encode + grid walk with the real net on every queried point; analytic occupancy values."""
    framed = frame_subject(image, size=size)
    img = torch.from_numpy(framed.network_input())
    calib = torch.from_numpy(canonical.calib_for_view(0.0)).float()[None]
    with torch.inference_mode():
        t = time.perf_counter()
        model.encode(img)
        encode = time.perf_counter() - t

        def fn(points: np.ndarray) -> np.ndarray:
            pts = torch.from_numpy(points).t()[None]
            model.query_occupancy(pts, calib, fast=isinstance(model, PIFu))
            return body_occupancy(points).astype(np.float32)

        t = time.perf_counter()
        grid = evaluate_coarse_to_fine(fn, spec, batch_size=chunk)
        occupancy = time.perf_counter() - t
    n = int(grid.points_evaluated)
    return {"model": name, "input": size, "encode_s": round(encode, 3), "occupancy_s": round(occupancy, 3),
            "points": n, "us_per_point": round(1e6 * occupancy / max(n, 1), 2),
            "total_s": round(encode + occupancy, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=128, help="grid cells per axis (default 128)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=4096, help="points per network call")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results_pifuhd.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    image = body_image(1024)
    spec = GridSpec(args.resolution, canonical.BOX_MIN, canonical.BOX_MAX)
    pifu = PIFu(ModelConfig.official(), with_color=False).eval()
    hd = PIFuHD(*release_options()).eval()
    runs: dict[str, list[dict]] = {"pifu_512": [], "pifuhd_1024": []}
    for _ in range(args.repeats):
        runs["pifu_512"].append(run_model("PIFu", pifu, 512, image, spec, args.chunk))
        runs["pifuhd_1024"].append(run_model("PIFuHD", hd, 1024, image, spec, args.chunk))
    best = {k: min(v, key=lambda r: r["total_s"]) for k, v in runs.items()}
    base = best["pifu_512"]
    for r in best.values():
        r["ratio_total_vs_pifu"] = round(r["total_s"] / base["total_s"], 2)
        r["ratio_encode_vs_pifu"] = round(r["encode_s"] / base["encode_s"], 2)
        r["ratio_per_point_vs_pifu"] = round(r["us_per_point"] / base["us_per_point"], 2)
    out = {"benchmark": "bench_pifuhd", "resolution": args.resolution, "chunk": args.chunk,
           "device": "cpu", "threads": torch.get_num_threads(), "load_average": list(os.getloadavg()),
           "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
           "baseline": "PIFu (official sizes, 512² input, pre-projected MLP) in the same run",
           "results": best, "all_runs": runs,
           "notes": ["occupancy values from the analytic body; every queried point runs the real net",
                     "PIFuHD: coarse level with both normal nets at 512², fine level at 1024²"]}
    write_json(args.out, out)
    print(json.dumps(best, indent=1))


if __name__ == "__main__":
    main()
