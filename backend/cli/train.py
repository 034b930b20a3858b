"""Train or fine-tune PIFu on a relit dataset: the colour net with L1 or 3D patch-wise SSIM (the paper's
method), the geometry net, or both. Checkpoints land in RUN/checkpoints; `--resume RUN` continues a run
exactly where its last checkpoint left it. Multi-GPU / multi-node: run the same command under
`torchrun --nproc-per-node N`. Ctrl-C checkpoints and stops (twice: stop at once). docs/training.md
has every option and the loss formulas."""

from __future__ import annotations

import argparse
import sys

HELP = "train / fine-tune PIFu (L1 or 3D patch-wise SSIM colour loss), resumable, multi-GPU"
PATHS = ("data", "out", "config", "init_g", "init_c", "init", "resume")


# TrainConfig fields with a flag of their own, by group; every other field is reachable with --set.
FLAG_GROUPS: dict[str, list[str]] = {
    "data and run": ["data", "out", "levels"],
    "initialisation (default: new nets of --model)": ["init_g", "init_c", "init", "model"],
    "what and how": ["stage", "loss", "batch", "lr", "seed"],
    "runtime": ["device", "workers", "progress_bar"],
}
EXCLUSIVE = ["steps", "epochs"]   # "what and how", one or the other
METAVARS = {"data": "DATASET", "out": "RUN", "levels": "LEVEL", "init_g": "NET_G", "init_c": "NET_C",
            "init": "CKPT", "steps": "N", "epochs": "E", "batch": "B", "workers": "W"}


def configure(parser: argparse.ArgumentParser) -> None:
    """The flags come from :class:`~backend.train.config.TrainConfig` (types, choices, defaults, help)."""
    from backend.cli.dataclass_args import add_fields
    from backend.train.config import TrainConfig

    groups = {title: parser.add_argument_group(title) for title in FLAG_GROUPS}
    for title, names in FLAG_GROUPS.items():
        add_fields(groups[title], TrainConfig, names, metavars=METAVARS)
        if title == "data and run":
            groups[title].add_argument("--config", metavar="FILE",
                                       help="TOML file with TrainConfig fields; flags override it")
        elif title.startswith("initialisation"):
            groups[title].add_argument("--resume", metavar="RUN",
                                       help="continue RUN from its last checkpoint")
        elif title == "what and how":
            exclusive = groups[title].add_mutually_exclusive_group()
            add_fields(exclusive, TrainConfig, EXCLUSIVE, metavars=METAVARS)
    groups["runtime"].add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                                   help="any other TrainConfig field, VALUE in TOML syntax (e.g. --set "
                                        "patches=400)")


def build_config(args: argparse.Namespace) -> dict:
    """The TrainConfig dict from a TOML file, ``--set`` pairs and flags (later wins)."""
    import tomllib
    from pathlib import Path

    from backend.cli.dataclass_args import given
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
    config.update(given(args, [n for names in FLAG_GROUPS.values() for n in names] + EXCLUSIVE))
    if args.resume:
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise InputError("--resume RUN continues RUN; do not also give a different --out")
        config.update(out=args.resume, resume=True)
    return config


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import signal

    from avatex_core.progress import Progress
    from backend.train import run_training

    config = build_config(args)
    for key in ("out", "cache_dir"):   # a file (or FIFO) there would only fail when the run writes to it
        value = config.get(key)
        if isinstance(value, str) and os.path.exists(value) and not os.path.isdir(value):
            from backend.errors import InputError

            raise InputError(f"{key} {value!r} exists and is not a folder")
    stop = {"requested": False}

    def on_sigint(signum, frame):  # first Ctrl-C: checkpoint and stop; second: the default
        stop["requested"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\navatex train: stopping after this step (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = run_training(config, progress=Progress(should_stop=lambda: stop["requested"]))
    finally:
        signal.signal(signal.SIGINT, previous)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: result[k] for k in ("checkpoint", "step", "train", "val", "val_initial")
                          if k in result}, indent=2))
    return 0
