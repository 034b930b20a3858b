"""Quality of PIFu's multi-view mode: PATD (dense flavour) and Chamfer with 1, 2 and 4 calibrated views.

For every subject of a rendered avatex dataset (docs/dataset.md), reconstructs from the views of each
view set with ``backend.recon.reconstruct_views`` and evaluates the mesh against the subject's GT with
``backend.metrics.evaluate.evaluate_meshes`` (same space: calibrated views reconstruct in the subject's
canonical space, so nothing is aligned). The 1-view set is the baseline measured in the same run;
``ratio`` is each set's mean over the 1-view mean. Quality, not speed: there are no timings to compare.

The held-out avatars of ``tests/fixtures/valid/`` rendered at four yaws (0, 90, 180, 270 degrees):

    .venv/bin/python -m backend render --meshes tests/fixtures/valid/*/*.obj --out /tmp/valid4 \\
        --views 4 --step 90 --levels clear --samples 8 --albedo-samples 4
    .venv/bin/python benchmarks/multiview_quality.py --dataset /tmp/valid4 \\
        --checkpoint backend/assets/pifu_small.pt --sets 0 0,2 0,1,2,3 --resolution 256
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.data.dataset import Dataset  # noqa: E402
from backend.meshio import ColoredMesh  # noqa: E402
from backend.metrics.evaluate import evaluate_meshes  # noqa: E402
from backend.metrics.geometry import cm_per_unit_from_normalization  # noqa: E402
from backend.models.checkpoint import load_checkpoint  # noqa: E402
from backend.recon import View, reconstruct_views  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, default=Path("backend/assets/pifu_small.pt"))
    parser.add_argument("--sets", nargs="+", default=["0", "0,2", "0,1,2,3"],
                        help="view sets, each a comma-separated list of view indices")
    parser.add_argument("--level", default=None, help="lighting level (default: the dataset's first)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--gt-samples", type=int, default=200_000, help="dense PATD GT surface samples")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_multiview.json"))
    args = parser.parse_args(argv)

    data = Dataset(args.dataset)
    level = args.level or data.levels[0]
    model, _ = load_checkpoint(args.checkpoint, device="cpu")
    sets = [[int(k) for k in s.split(",")] for s in args.sets]
    rows = []
    for sid in data.subjects():
        gt = data.gt_mesh(sid)
        for views in sets:
            t0 = time.perf_counter()
            given = [View(data.image(sid, k, level), data.calib(sid, k)) for k in views]
            rec = reconstruct_views(model, given, resolution=args.resolution, device="cpu")
            pred = ColoredMesh(rec.vertices, rec.faces, vertex_colors=rec.colors)
            report, _ = evaluate_meshes(pred, gt, gt_samples=args.gt_samples, device="cpu",
                                        cm_per_unit=cm_per_unit_from_normalization(data.normalization(sid)))
            geo = report["geometry"]
            rows.append({"subject": sid, "views": views, "yaws": [data.views[k]["yaw"] for k in views],
                         "patd_dense_mean": report["patd_dense_mean"], "patd_mean": report["patd_mean"],
                         "chamfer": geo["chamfer"], "chamfer_cm": geo.get("chamfer_cm"),
                         "vertices": int(len(rec.vertices)), "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)
    summary = []
    for views in sets:
        mine = [r for r in rows if r["views"] == views]
        summary.append({"views": views, "n_views": len(views),
                        "patd_dense_mean": float(np.mean([r["patd_dense_mean"] for r in mine])),
                        "chamfer": float(np.mean([r["chamfer"] for r in mine])),
                        "chamfer_cm": float(np.mean([r["chamfer_cm"] for r in mine]))})
    base = summary[0]
    for s in summary:
        s["patd_dense_ratio"] = s["patd_dense_mean"] / base["patd_dense_mean"]
        s["chamfer_ratio"] = s["chamfer"] / base["chamfer"]
    result = {"dataset": str(args.dataset), "checkpoint": str(args.checkpoint), "level": level,
              "resolution": args.resolution, "gt_samples": args.gt_samples,
              "baseline": "views " + args.sets[0],
              "load_average": round(os.getloadavg()[0], 2), "summary": summary, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for s in summary:
        print(f"{s['n_views']} view(s) {s['views']}: PATD dense {s['patd_dense_mean']:.3f} "
              f"(x{s['patd_dense_ratio']:.3f}), Chamfer {s['chamfer_cm']:.2f} cm (x{s['chamfer_ratio']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
