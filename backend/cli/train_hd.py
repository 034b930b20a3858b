"""avatex train-hd: train PIFuHD's parts on an avatex dataset and write a pifuhd.pt in the release layout.

The official PIFuHD release is inference-only. This trains, in the order given by --parts:
  normals  the front/back normal nets on the dataset's normal maps (render it with `avatex render --normals`);
  coarse   the coarse level (filter + MLP), fed the normal nets' predictions as at inference;
  fine     the fine level on top of the frozen coarse level (PIFuHD's second stage).
Each part trains with the others frozen (docs/models.md, "PIFuHD": losses, and the perceptual-loss
substitute). --init starts from a pifuhd.pt (the released one, or an earlier run); without it a new model
is built, --size small (CPU-sized, the release's keys) or release (386M parameters, a GPU's job). The
output loads with `avatex reconstruct --model pifuhd --checkpoint OUT.pt` and with the official code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train PIFuHD's normal nets, coarse and fine level on a dataset (writes a release-layout pifuhd.pt)"
PATHS = ("data", "out", "init", "cache")
PARTS = ("normals", "coarse", "fine")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, metavar="DATASET",
                        help="an avatex dataset (`avatex render`)")
    parser.add_argument("--out", type=Path, required=True, metavar="PIFUHD.pt",
                        help="the trained model (.pt)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="what to train, in this order (default: normals coarse fine)")
    parser.add_argument("--init", type=Path, metavar="PIFUHD.pt", help="start from this release-layout file")
    parser.add_argument("--size", choices=("small", "release"), default="small",
                        help="without --init: a CPU-sized model with the release's keys (default), or "
                             "the release's own size")
    parser.add_argument("--load-size", type=int, default=128,
                        help="with --size small: the coarse input size (the fine level sees twice it)")
    parser.add_argument("--steps", type=int, default=100, help="optimisation steps per part (default 100)")
    parser.add_argument("--batch", type=int, default=2, help="items per step (default 2)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--points", type=int, default=2000, help="geometry samples per item (default 2000)")
    parser.add_argument("--dense-samples", type=int, default=200_000,
                        help="inside/outside samples per subject the geometry sampler draws from (200000)")
    parser.add_argument("--w-grad", type=float, default=1.0,
                        help="weight of the gradient term of the normal loss (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model and the samples (default 0)")
    parser.add_argument("--cache", type=Path, metavar="DIR",
                        help="where the geometry sampler caches (default: a temp dir)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available, else cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    from backend.errors import InputError
    from backend.server.paths import check_output

    if not str(args.out).lower().endswith(".pt"):
        raise InputError(f"--out must name a .pt file, got {args.out}")
    check_output(args.out, args.overwrite, "--out")   # before the work, not after it
    if args.init is None and args.size == "small" and not 32 <= args.load_size <= 512:
        raise InputError(f"--load-size must be between 32 and 512, got {args.load_size}")

    import torch

    from avatex_core.progress import Progress
    from backend.models.device import resolve_device
    from backend.models.pifuhd import PIFuHD, load_pifuhd, release_options, save_pifuhd, small_options
    from backend.train.pifuhd import HDTrainSettings, train_coarse, train_fine, train_normals

    settings = HDTrainSettings(steps=args.steps, batch=args.batch, lr=args.lr, points=args.points,
                               dense_samples=args.dense_samples, w_grad=args.w_grad, seed=args.seed)
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    if args.init is not None:
        model, _ = load_pifuhd(args.init, device=device)
    else:
        opts = release_options() if args.size == "release" else small_options(args.load_size)
        model = PIFuHD(*opts).to(device)
    def report(stage: str, fraction: float, info: dict) -> None:
        step = info.get("step")
        if step is not None and (step == settings.steps or step % max(1, settings.steps // 10) == 0):
            print(f"  {stage} {step}/{settings.steps}: loss {info.get('loss', float('nan')):.4f}", flush=True)

    losses: dict[str, list[float]] = {}
    for part in args.parts:
        print(f"training {part} ({settings.steps} steps, batch {settings.batch}) on {device}", flush=True)
        progress = Progress(report, interval_s=0.0)
        if part == "normals":
            losses[part] = train_normals(model, args.data, settings, device=device, progress=progress)
        else:
            train = train_coarse if part == "coarse" else train_fine
            losses[part] = train(model, args.data, settings, cache_dir=args.cache, device=device,
                                 progress=progress)
    state = {"avatex_train_hd": {"data": str(args.data), "parts": list(args.parts), "steps": settings.steps,
                                 "batch": settings.batch, "lr": settings.lr, "seed": settings.seed,
                                 "init": None if args.init is None else str(args.init),
                                 "loss_first_last": {p: [v[0], v[-1]] for p, v in losses.items()}}}
    save_pifuhd(args.out, model.cpu(), train_state=state)
    summary = ", ".join(f"{p} {v[0]:.4f} -> {v[-1]:.4f}" for p, v in losses.items())
    print(f"wrote {args.out} (loss {summary}); reconstruct with "
          f"`avatex reconstruct IMAGE --model pifuhd --checkpoint {args.out}`")
    return 0
