"""Benchmark: automatic person masks on held-out avatars composited onto real photographs.

For each avatar of tests/fixtures/valid (front view, ``clear`` light, 512², rendered by ``avatex render``)
and each photograph of tests/fixtures/photos (MATE backgrounds, GPL-2+):

1. the composite (render over photo) and its true mask (the render's alpha);
2. the automatic mask of the composite by each method (``pose``: mediapipe's pose model, ``grabcut``) and
   its IoU against the true alpha;
3. the reconstruction with the shipped checkpoint (backend/assets/pifu_small.pt, ``--resolution``) from
   the composite with the pose mask, against the reconstruction from the true-alpha render: Chamfer (cm,
   at the avatar's height) and PATD / PIPATD (the second reconstruction's vertex colours as reference).

Writes JSON (``--out``, default benchmarks/results_masks.json) and prints the docs table.

    .venv/bin/python benchmarks/bench_masks.py [--resolution 128] [--out benchmarks/results_masks.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatex_core.atomic import write_json  # noqa: E402
from backend.masks import composite, grabcut_mask, iou, pose_mask  # noqa: E402
from backend.meshio import ColoredMesh  # noqa: E402
from backend.metrics.evaluate import evaluate_meshes  # noqa: E402
from backend.metrics.geometry import cm_per_canonical_unit  # noqa: E402
from backend.models.checkpoint import load_checkpoint  # noqa: E402
from backend.recon import reconstruct  # noqa: E402
from tests.helpers.photos import VALID, photos, render_front_views  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_masks.json")
    args = parser.parse_args()
    with open(VALID / "index.csv", newline="") as f:
        heights = {r["avatar"]: float(r["height_m"]) for r in csv.DictReader(f)}
    model, _ = load_checkpoint(ROOT / "backend" / "assets" / "pifu_small.pt", device="cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        renders = render_front_views(Path(tmp) / "ds")
    backgrounds = photos()
    for avatar, rgba in renders.items():
        ref = reconstruct(model, rgba, resolution=args.resolution, device="cpu")
        ref_mesh = ColoredMesh(ref.vertices.astype("float64"), ref.faces, vertex_colors=ref.colors)
        for photo, background in backgrounds.items():
            image = composite(rgba, background)
            row = {"avatar": avatar, "photo": photo}
            for method, fn in (("pose", pose_mask), ("grabcut", grabcut_mask)):
                t0 = time.perf_counter()
                mask = fn(image)
                row[f"{method}_seconds"] = time.perf_counter() - t0
                row[f"{method}_iou"] = iou(mask, rgba[:, :, 3])
                if method == "pose":
                    pose = mask
            rec = reconstruct(model, image, pose, resolution=args.resolution, device="cpu")
            report, _ = evaluate_meshes(ColoredMesh(rec.vertices.astype("float64"), rec.faces,
                                                    vertex_colors=rec.colors), ref_mesh,
                                        cm_per_unit=cm_per_canonical_unit(heights[avatar]))
            row.update(chamfer_cm=report["geometry"]["chamfer_cm"], patd=report["patd_mean"],
                       pipatd=report["pipatd_mean"], vertices=int(len(rec.vertices)))
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"benchmark": "masks", "resolution": args.resolution,
              "checkpoint": "backend/assets/pifu_small.pt", "rows": rows,
              "min_pose_iou": min(r["pose_iou"] for r in rows),
              "mean_pose_iou": sum(r["pose_iou"] for r in rows) / len(rows),
              "mean_grabcut_iou": sum(r["grabcut_iou"] for r in rows) / len(rows),
              "grabcut_to_pose_seconds_ratio": sum(r["grabcut_seconds"] for r in rows)
              / sum(r["pose_seconds"] for r in rows)}
    write_json(args.out, result)
    print("| avatar | photo | pose IoU | GrabCut IoU | Chamfer (cm) | PATD | PIPATD |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['avatar']} | {r['photo']} | {r['pose_iou']:.3f} | {r['grabcut_iou']:.3f} | "
              f"{r['chamfer_cm']:.2f} | {r['patd']:.2f} | {r['pipatd']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
