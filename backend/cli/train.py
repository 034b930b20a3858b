"""Train or fine-tune PIFu on a relit dataset: the colour net with L1 or 3D patch-wise SSIM (the seed's
method), the geometry net, or both. Checkpoints land in RUN/checkpoints; `--resume RUN` continues a run
exactly where its last checkpoint left it. Multi-GPU / multi-node: run the same command under
`torchrun --nproc-per-node N`. Ctrl-C checkpoints and stops (twice: stop at once). docs/training.md
has every option and the loss formulas."""

from __future__ import annotations

import argparse
import sys

HELP = "train / fine-tune PIFu (L1 or 3D patch-wise SSIM colour loss), resumable, multi-GPU"
PATHS = ("data", "out", "config", "init_g", "init_c", "init", "resume")


def configure(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("data and run")
    io.add_argument("--data", metavar="DATASET", help="relit dataset folder (avatex render)")
    io.add_argument("--out", metavar="RUN", help="run folder (checkpoints, logs, plot)")
    io.add_argument("--config", metavar="FILE", help="TOML file with TrainConfig fields; flags override it")
    io.add_argument("--levels", nargs="+", metavar="LEVEL", help="lighting levels to train on (default all)")
    init = parser.add_argument_group("initialisation (default: new nets of --model)")
    init.add_argument("--init-g", metavar="NET_G", help="official PIFu net_G file")
    init.add_argument("--init-c", metavar="NET_C", help="official PIFu net_C file (needs --init-g)")
    init.add_argument("--init", metavar="CKPT", help="avatex checkpoint to start from")
    init.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    init.add_argument("--model", choices=("small", "official"), help="architecture of new nets")
    what = parser.add_argument_group("what and how")
    what.add_argument("--stage", choices=("geometry", "color", "both"), help="nets to train (default color)")
    what.add_argument("--loss", choices=("l1", "ssim", "l1+ssim"), help="colour loss (default ssim)")
    steps = what.add_mutually_exclusive_group()
    steps.add_argument("--steps", type=int, metavar="N", help="optimiser steps (default 1000)")
    steps.add_argument("--epochs", type=float, metavar="E", help="passes over the training items")
    what.add_argument("--batch", type=int, metavar="B", help="global batch size (default 2)")
    what.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    what.add_argument("--seed", type=int, help="seed of initialisation, data order and sampling (default 0)")
    run = parser.add_argument_group("runtime")
    run.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when available)")
    run.add_argument("--workers", type=int, metavar="W", help="data loader worker processes (default 2)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="any other TrainConfig field, VALUE in TOML syntax (e.g. --set patches=400)")
    run.add_argument("--no-progress-bar", action="store_true", help="no tqdm bar (logs still written)")


def build_config(args: argparse.Namespace) -> dict:
    """The TrainConfig dict from a TOML file, ``--set`` pairs and flags (later wins)."""
    import tomllib
    from pathlib import Path

    from backend.errors import InputError
    from backend.train.config import toml_fields

    config: dict = toml_fields(args.config) if args.config else {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set wants KEY=VALUE, got {item!r}")
        try:
            config[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            config[key.strip()] = value  # a bare string
    flags = {"data": args.data, "out": args.out, "levels": args.levels, "init_g": args.init_g,
             "init_c": args.init_c, "init": args.init, "model": args.model, "stage": args.stage,
             "loss": args.loss, "steps": args.steps, "epochs": args.epochs, "batch": args.batch,
             "lr": args.lr, "seed": args.seed, "device": args.device, "workers": args.workers}
    config.update({k: v for k, v in flags.items() if v is not None})
    if args.no_progress_bar:
        config["progress_bar"] = False
    if args.resume:
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise InputError("--resume RUN continues RUN; do not also give a different --out")
        config.update(out=args.resume, resume=True)
    return config


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import signal

    from backend.train import run_training

    config = build_config(args)
    stop = {"requested": False}

    def on_sigint(signum, frame):  # first Ctrl-C: checkpoint and stop; second: the default
        stop["requested"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\navatex train: stopping after this step (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = run_training(config, should_stop=lambda: stop["requested"])
    finally:
        signal.signal(signal.SIGINT, previous)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: result[k] for k in ("checkpoint", "step", "train", "val", "val_initial")
                          if k in result}, indent=2))
    return 0
