"""Benchmark: `evaluate_runs` on colour fine-tunes that share one geometry net, against evaluating them
one by one (the naive loop: every model reconstructs every input image and runs its own Blender).

Set-up (made here, in a temporary folder): one sample avatar rendered at 128 px, 4 views x 3 levels;
three tiny real PIFu checkpoints with one net_g and three different colour nets (what a baseline and its
L1 / patch-SSIM fine-tunes look like). Both variants evaluate 1 subject x 1 input view x 3 levels x 3
models, with image metrics (1 input + 2 novel views). Runs are interleaved and the best of N is kept,
because the machine is shared; the load average is reported. Both variants must give identical
per-item values (checked).

    .venv/bin/python benchmarks/bench_evaluation.py [--resolution 64] [--repeats 2] [--no-image-metrics]
        [--geometry-samples 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.evaluation import evaluate_runs  # noqa: E402
from backend.models import ModelConfig, PIFu  # noqa: E402
from backend.models.checkpoint import save_checkpoint  # noqa: E402

TINY = {"load_size": 64, "hg_width": 32, "hourglass_dim": 32, "norm_groups": 8, "mlp_dim": [33, 32, 16, 1],
        "color_ngf": 8, "color_blocks": 2, "mlp_dim_color": [65, 32, 16, 3]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-image-metrics", action="store_true")
    p.add_argument("--geometry-samples", type=int, default=5000,
                   help="per mesh (the random tiny nets make blobs far from the GT, the slow case of the "
                        "closest-point search)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        work = Path(tmp)
        data = work / "data"
        subprocess.run([sys.executable, str(ROOT / "render_scripts" / "render_dataset.py"), "--meshes",
                        str(ROOT / "tests" / "fixtures" / "avatars" / "avatar_0002.ply"), "--out", str(data),
                        "--views", "4", "--step", "90", "--resolution", "128", "--samples", "2",
                        "--albedo-samples", "1", "--no-denoise", "--test-fraction", "1"],
                       check=True, capture_output=True)
        torch.manual_seed(0)
        model = PIFu(ModelConfig.small(**TINY)).eval()
        models = {}
        for name in ("baseline", "l1", "ssim"):
            models[name] = save_checkpoint(work / f"{name}.pt", model)
            with torch.no_grad():
                for q in model.net_c.parameters():
                    q.add_(0.05 * torch.randn_like(q))
        common = dict(resolution=args.resolution, device="cpu", novel_views=2,
                      geometry_samples=args.geometry_samples, image_metrics=not args.no_image_metrics)
        shared_times, separate_times = [], []
        shared = separate = None
        for _ in range(args.repeats):
            t = time.perf_counter()
            shared = evaluate_runs(models, data, **common)
            shared_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            separate = [evaluate_runs({name: path}, data, **common) for name, path in models.items()]
            separate_times.append(time.perf_counter() - t)
        alone = [row for ev in separate for row in ev.per_item]
        keys = ("patd", "pipatd", "chamfer", "psnr_input", "ssim_novel")
        pairs = zip(sorted(shared.per_item, key=_key), sorted(alone, key=_key), strict=True)
        same = all(a.get(k) == b.get(k) for a, b in pairs for k in keys)
        result = {
            "benchmark": "evaluation: shared geometry vs one model at a time",
            "items": len(shared.per_item), "resolution": args.resolution,
            "image_metrics": not args.no_image_metrics,
            "shared_s": round(min(shared_times), 3), "separate_s": round(min(separate_times), 3),
            "speedup": round(min(separate_times) / min(shared_times), 3),
            "shared_stats": {k: shared.stats[k] for k in ("reconstructions", "color_queries",
                                                          "geometry_evaluations", "render_processes")},
            "separate_stats": {k: sum(ev.stats[k] for ev in separate)
                               for k in ("reconstructions", "color_queries", "geometry_evaluations",
                                         "render_processes")},
            "shared_seconds_by_stage_last_run": shared.stats["seconds"],
            "identical_values": same,
            "load_average": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        }
    print(json.dumps(result, indent=2))
    return 0 if same else 1


def _key(row: dict) -> tuple:
    return (row["model"], row["subject"], row["view"], row["level"])


if __name__ == "__main__":
    sys.exit(main())
