"""Measurement: PIFuHD against PIFu geometry on held-out clothed avatars at an equal, tiny training budget.

Both models start from random weights and train on the same relit dataset (rendered with --normals)
for the same number of optimisation steps in total, each step ``--batch`` items of ``--points``
geometry samples, Adam at ``--lr``:

* PIFu (``ModelConfig.small``, 256² input): ``3 * steps`` geometry steps (official MSE loss);
* PIFuHD (``small_options(128)``: coarse 128², fine 256², normal nets of width 16): ``steps`` for the
  normal nets, then ``steps`` for the coarse level, then ``steps`` for the fine level on top of it.

Each then reconstructs the front view of every subject of the held-out dataset (the persons of
tests/fixtures/valid, never in training) at grid resolution ``--resolution``, and the meshes are
compared to the GT meshes (backend.metrics.geometry: Chamfer, both point-to-surface directions and
normal consistency, in canonical units). This budget is far below what either model needs; the numbers
say how the two behave at the same small budget, not what a trained PIFuHD achieves.

    .venv/bin/python benchmarks/pifuhd_vs_pifu.py --train DATASET --heldout DATASET [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatex_core.atomic import write_json  # noqa: E402
from backend.data.dataset import Dataset  # noqa: E402
from backend.meshio import load_mesh  # noqa: E402
from backend.metrics.geometry import geometry_metrics  # noqa: E402
from backend.models import ModelConfig, PIFu  # noqa: E402
from backend.models.pifuhd import PIFuHD, small_options  # noqa: E402
from backend.recon import reconstruct  # noqa: E402
from backend.recon.pifuhd import PIFuHDRecon  # noqa: E402
from backend.train.config import TrainConfig  # noqa: E402
from backend.train.data import TrainItems, train_items  # noqa: E402
from backend.train.pifuhd import HDTrainSettings, train_coarse, train_fine, train_normals  # noqa: E402
from backend.train.source import open_source  # noqa: E402

DENSE = 50_000   # per-subject sampling pool, shared by both models through one cache folder


def train_pifu(data: Path, steps: int, batch: int, points: int, lr: float, seed: int, cache: Path
               ) -> tuple[PIFu, list]:
    torch.manual_seed(seed)
    model = PIFu(ModelConfig.small(), with_color=False)
    model.train()
    opt = torch.optim.Adam(model.net_g.parameters(), lr=lr)
    losses = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig.from_dict({"data": str(data), "out": str(Path(tmp) / "run"), "stage": "geometry",
                                     "seed": seed, "points_geometry": points, "dense_samples": DENSE,
                                     "progress_bar": False})
        ds = TrainItems(cfg, train_items(open_source(str(data)), None), model.config.load_size, cache)
        for step in range(steps):
            b = [ds[step * batch + j] for j in range(batch)]
            model.encode(torch.stack([x["image"] for x in b]), channels_last=False)
            model.query_occupancy_stacks(torch.stack([x["geo_points"] for x in b]),
                                         torch.stack([x["calib"] for x in b]))
            loss = model.net_g.get_error(torch.stack([x["geo_labels"] for x in b]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    model.eval()
    return model, losses


def evaluate(model, heldout: Dataset, resolution: int) -> dict:
    out = {}
    for sid in heldout.subjects():
        level = heldout.levels[0]
        image = heldout.image(sid, 0, level)
        rec = reconstruct(model, image, resolution=resolution, device="cpu")
        gt = load_mesh(heldout.gt_mesh_path(sid))
        m = geometry_metrics(rec.vertices, rec.faces, np.asarray(gt.vertices), np.asarray(gt.faces),
                             samples=50_000, rng=0)
        out[sid] = {"chamfer": round(m.chamfer, 5), "p2s_pred_to_gt": round(m.pred_to_gt, 5),
                    "p2s_gt_to_pred": round(m.gt_to_pred, 5),
                    "normal_consistency": round(m.normal_consistency, 4),
                    "vertices": int(len(rec.vertices)), "seconds": rec.stats["seconds"]["total"]}
    keys = ("chamfer", "p2s_pred_to_gt", "p2s_gt_to_pred", "normal_consistency")
    out["mean"] = {k: round(float(np.mean([v[k] for v in out.values()])), 5) for k in keys}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results_pifuhd_vs_pifu.json"))
    args = ap.parse_args()
    heldout = Dataset(args.heldout)
    overlap = set(Dataset(args.train).subjects()) & set(heldout.subjects())
    if overlap:
        raise SystemExit(f"held-out subjects are in the training set: {sorted(overlap)}")

    t = time.perf_counter()
    cache = Path(tempfile.mkdtemp(prefix="pifuhd-vs-pifu-"))
    pifu, pifu_losses = train_pifu(args.train, 3 * args.steps, args.batch, args.points, args.lr, args.seed,
                                   cache)
    pifu_train_s = time.perf_counter() - t
    torch.manual_seed(args.seed)
    hd = PIFuHD(*small_options(128, normal_ngf=16))
    s = HDTrainSettings(steps=args.steps, batch=args.batch, lr=args.lr, points=args.points, seed=args.seed,
                        dense_samples=DENSE)
    t = time.perf_counter()
    hd_losses = {"normals": train_normals(hd, args.train, s),
                 "coarse": train_coarse(hd, args.train, s, cache_dir=cache),
                 "fine": train_fine(hd, args.train, s, cache_dir=cache)}
    hd_train_s = time.perf_counter() - t

    result = {
        "measurement": "pifuhd_vs_pifu",
        "budget": {"optimisation_steps_total": 3 * args.steps, "batch": args.batch, "points": args.points,
                   "lr": args.lr, "pifu": f"{3 * args.steps} geometry steps",
                   "pifuhd": f"{args.steps} normal-net + {args.steps} coarse + {args.steps} fine steps"},
        "train_subjects": Dataset(args.train).subjects(), "heldout_subjects": heldout.subjects(),
        "resolution": args.resolution, "load_average": list(os.getloadavg()),
        "pifu": {"train_seconds": round(pifu_train_s, 1),
                 "loss_first_last": [pifu_losses[0], pifu_losses[-1]],
                 "geometry": evaluate(pifu, heldout, args.resolution)},
        "pifuhd": {"train_seconds": round(hd_train_s, 1),
                   "loss_first_last": {k: [v[0], v[-1]] for k, v in hd_losses.items()},
                   "geometry": evaluate(PIFuHDRecon(hd), heldout, args.resolution)},
        "units": "canonical units (the subject is 2 * 450/512 = 1.76 units tall)",
    }
    write_json(args.out, result)
    print(json.dumps({k: result[k]["geometry"]["mean"] for k in ("pifu", "pifuhd")}, indent=1))


if __name__ == "__main__":
    main()
