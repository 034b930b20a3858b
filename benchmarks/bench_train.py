"""Training throughput: avatex's pipeline vs a loop that samples like the official PIFu TrainDataset.

    .venv/bin/python benchmarks/bench_train.py [--data DATASET] [--batch 2] [--points 5000]
                                               [--steps 3] [--repeats 2] [--workers 2] [--device cpu]

Both loops run the same model step (the full-size official nets, 512 px input, colour stage: netG frozen
in eval mode under no_grad, netC forward + backward + Adam) on the same batch size and point count; they
differ only in how a batch is made:

* **avatex**: ``TrainItems`` in ``--workers`` DataLoader processes, sampling from the per-subject cache
  (built before timing; the cache is a one-off per subject), for ``--loss l1`` (5000 colour points)
  and ``ssim`` (200 patches of 5x5 = 5000 points).
* **baseline** (official ``TrainDataset.get_item``, in the main process): decode the PNG, draw 4N
  surface points + N(0, sigma) and N/4 uniform points with trimesh, label them with ``mesh.contains``
  (ray tests; trimesh uses rtree without pyembree), balance, and draw N colour points with trimesh's
  ``sample_surface`` and barycentric vertex colours.

Timing is best-of-``--repeats`` of ``--steps`` consecutive steps after one warm-up step (the machine is
shared: the best run is the least disturbed). Without ``--data`` a tiny dataset (2 committed sample
avatars x 2 views x 1 level at 512 px) is rendered first with the project's renderer (bpy wheel).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.models import ModelConfig, PIFu  # noqa: E402
from backend.train.config import TrainConfig  # noqa: E402
from backend.train.data import StepSampler, TrainItems, image_tensors, load_subject, make_loader  # noqa: E402
from backend.train.data import train_items as list_items  # noqa: E402
from backend.train.loop import Objective, configure_trainable, make_optimizers  # noqa: E402
from backend.train.source import open_source  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "avatars"


def render_dataset(out: Path, resolution: int = 512, device: str = "auto") -> Path:
    """A tiny dataset (2 sample avatars x 2 views x 1 level); ``device`` is Cycles' (auto = GPU if any)."""
    meshes = [str(FIXTURES / "avatar_0000.ply"), str(FIXTURES / "avatar_0001.obj")]
    cmd = [sys.executable, str(ROOT / "render_scripts" / "render_dataset.py"), "--meshes", *meshes,
           "--out", str(out), "--views", "2", "--step", "180", "--levels", "clear", "--resolution",
           str(resolution), "--samples", "4", "--albedo-samples", "1", "--no-denoise", "--test-fraction", "0",
           "--device", device]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""Precision of a timed step: fp32, or autocast to bfloat16 / float16 (float16 with a GradScaler, as the
training loop does on CUDA)."""


def train_step(objective: Objective, optimizers: dict, batch: dict, device: torch.device,
               precision: str = "fp32", scaler: torch.amp.GradScaler | None = None) -> float:
    batch = {k: v.to(device) for k, v in batch.items()}
    dtype = AUTOCAST[precision]
    with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
        out = objective(batch)
    if scaler is None:
        out["loss"].backward()
    else:
        scaler.scale(out["loss"]).backward()
    for opt in optimizers.values():
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
        opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.update()
    return float(out["loss"].detach())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_avatex(cfg: TrainConfig, model: PIFu, device: torch.device, items, cache: Path, steps: int,
                repeats: int, precision: str = "fp32") -> list[float]:
    configure_trainable(model, cfg)
    model.train()
    objective, optimizers = Objective(model, cfg), make_optimizers(model, cfg)
    dataset = TrainItems(cfg, items, model.config.load_size, cache)
    total = 1 + repeats * steps
    loader = make_loader(dataset, StepSampler(0, total, cfg.batch), cfg.workers, device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    it = iter(loader)
    train_step(objective, optimizers, next(it), device, precision, scaler)  # warm-up (workers, caches)
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            train_step(objective, optimizers, next(it), device, precision, scaler)
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


class OfficialStyleItems:
    """Per-item sampling as PIFu's TrainDataset does it, with trimesh, in the calling process."""

    def __init__(self, source, items, size: int, points: int, sigma: float) -> None:
        import trimesh

        self.source, self.items, self.size, self.n, self.sigma = source, items, size, points, sigma
        self.meshes = {}
        for sid in sorted({s for s, _, _ in items}):
            m = source.mesh(sid)
            colors = m.per_vertex_colors()
            self.meshes[sid] = (trimesh.Trimesh(m.vertices, m.faces, process=False), colors)

    def item(self, k: int, rng: np.random.Generator) -> dict:
        import trimesh

        sid, view, level = self.items[k % len(self.items)]
        image, mask = image_tensors(self.source.rgba(sid, view, level), self.size)  # decodes the PNG
        mesh, colors = self.meshes[sid]
        n = self.n
        # select_sampling_method: 4N surface + N(0, sigma), N/4 uniform in the box, contains, balance
        surface, _ = trimesh.sample.sample_surface(mesh, 4 * n)
        cand = np.concatenate([surface + rng.normal(0, self.sigma, surface.shape),
                               rng.uniform(-1, 1, (n // 4, 3))])
        cand = cand[rng.permutation(len(cand))]
        inside = mesh.contains(cand)
        ins, outs = cand[inside], cand[~inside]
        half = n // 2
        ins, outs = (ins[:half], outs[:half]) if len(ins) > half else (ins, outs[:n - len(ins)])
        geo = np.concatenate([ins, outs])
        # get_color_sampling: N surface points with their colours
        pts, fidx = trimesh.sample.sample_surface(mesh, n)
        tri = mesh.triangles[fidx]
        bary = trimesh.triangles.points_to_barycentric(tri, pts)
        rgb = np.einsum("mk,mkj->mj", bary, colors[mesh.faces[fidx]])
        normals = mesh.face_normals[fidx]
        pts = pts + normals * rng.normal(0, 0.000977, (n, 1))
        return {"image": image, "mask": mask,
                "calib": torch.as_tensor(self.source.calib(sid, view), dtype=torch.float32),
                "geo_points": torch.from_numpy(geo.T.astype(np.float32)),
                "color_points": torch.from_numpy(pts.T.astype(np.float32)),
                "color_targets": torch.from_numpy((rgb * 2 - 1).T.astype(np.float32))}


def time_baseline(cfg: TrainConfig, model: PIFu, device: torch.device, maker: OfficialStyleItems,
                  warm_batch: dict, steps: int, repeats: int) -> tuple[list[float], float]:
    configure_trainable(model, cfg)
    model.train()
    objective, optimizers = Objective(model, cfg), make_optimizers(model, cfg)
    rng = np.random.default_rng(0)
    k = 0

    def batch() -> dict:
        nonlocal k
        items = [maker.item(k + j, rng) for j in range(cfg.batch)]
        k += cfg.batch
        return torch.utils.data.default_collate(items)

    train_step(objective, optimizers, warm_batch, device)  # model warm-up on a batch of the same shape
    times, sampling = [], []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        s_total = 0.0
        for _ in range(steps):
            ts = time.perf_counter()
            b = batch()
            s_total += time.perf_counter() - ts
            train_step(objective, optimizers, b, device)
        _sync(device)
        times.append(time.perf_counter() - t)
        sampling.append(s_total)
    return times, min(sampling) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="an existing relit dataset (default: render a tiny one)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--points", type=int, default=5000, help="points per item (PIFu: 5000)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--baseline-repeats", type=int, default=1,
                    help="the baseline's mesh.contains costs about a minute per item on 2 cores")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--load-size", type=int, default=512, help="network input (official: 512)")
    args = ap.parse_args()
    device = torch.device(args.device)
    tmp = tempfile.TemporaryDirectory(prefix="bench_train_")
    data = Path(args.data) if args.data else render_dataset(Path(tmp.name) / "data")
    cache = Path(tmp.name) / "cache"
    source = open_source(data)
    items = list_items(source, None)
    n = args.points
    base = dict(data=str(data), out=str(Path(tmp.name) / "run"), stage="color", batch=args.batch,
                workers=args.workers, points_color=n, patches=max(1, n // 25), patch_k=5, seed=0,
                cache_dir=str(cache), device=args.device)
    model_cfg = ModelConfig.official(load_size=args.load_size)
    results = {}
    for loss in ("l1", "ssim"):
        cfg = TrainConfig.from_dict({**base, "loss": loss})
        for sid in sorted({s for s, _, _ in items}):
            load_subject(source, sid, cfg, cache)  # the one-off per-subject cache, not timed
        torch.manual_seed(0)
        model = PIFu(model_cfg).to(device)
        times = time_avatex(cfg, model, device, items, cache, args.steps, args.repeats)
        best = min(times) / args.steps
        results[f"avatex_{loss}"] = {"s_per_iter": best, "iters_per_s": 1 / best,
                                     "points_per_s": args.batch * n / best,
                                     "all_s_per_iter": [t / args.steps for t in times]}
    cfg = TrainConfig.from_dict({**base, "loss": "l1"})
    torch.manual_seed(0)
    model = PIFu(model_cfg).to(device)
    maker = OfficialStyleItems(source, items, args.load_size, n, cfg.sigma_geometry)
    warm = next(iter(make_loader(TrainItems(cfg, items, args.load_size, cache), StepSampler(0, 1, cfg.batch),
                                 0, False)))
    times, sampling_s = time_baseline(cfg, model, device, maker, warm, args.steps, args.baseline_repeats)
    best = min(times) / args.steps
    results["baseline_official_sampling"] = {
        "s_per_iter": best, "iters_per_s": 1 / best, "points_per_s": args.batch * n / best,
        "sampling_s_per_iter": sampling_s, "model_step_s_per_iter": best - sampling_s,
        "all_s_per_iter": [t / args.steps for t in times]}
    base_ips = results["baseline_official_sampling"]["iters_per_s"]
    report = {
        "benchmark": "bench_train",
        "what": "full-size colour-net training steps (netG frozen), avatex pipeline vs official-style "
                "per-item sampling (trimesh sample_surface + mesh.contains in the main process)",
        "device": str(device), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_1min": os.getloadavg()[0],
        "batch": args.batch, "points_per_item": n, "load_size": args.load_size, "workers": args.workers,
        "timing": f"best of {args.repeats} (baseline: {args.baseline_repeats}) runs of {args.steps} steps "
                  "after 1 warm-up step (shared machine: the best run is the least disturbed)",
        "results": results,
        "ratio_iters_per_s": {k: v["iters_per_s"] / base_ips for k, v in results.items()
                              if k != "baseline_official_sampling"},
    }
    print(json.dumps(report, indent=2))
    tmp.cleanup()


if __name__ == "__main__":
    main()
