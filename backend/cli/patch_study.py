"""avatex patch-study: variants of the patch-SSIM fine-tune on a protocol run, scored on validation only.

Each variant is the protocol's L1 + local SSIM fine-tune with one patch setting changed (patches one or
two colour-feature cells wide, flat GT patches skipped, SSIM in CIELAB, a lighter or heavier SSIM
weight), trained for every seed of RUN from that seed's baseline for the same steps, and scored by
dense-surface PATD on B's validation split, with paired intervals against the column. The test split is
never read. Writes RUN/study/study.{json,md}; re-running resumes. docs/experiment.md ("Patch-loss study").
"""

from __future__ import annotations

import argparse

HELP = "patch-loss study on a protocol run: one setting changed per variant, validation only"
PATHS = ("run",)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN", help="an avatex protocol run folder")
    parser.add_argument("--seeds", default=None, help="seeds to study (default: the run's)")
    parser.add_argument("--variants", default=None,
                        help="comma-separated subset of cell, cell2, skip_flat, lab, ssim_light, ssim_heavy")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when available)")
    parser.add_argument("--threads", type=int, help="torch threads on the CPU (default: half the cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from backend.cli.protocol import parse_seeds
    from backend.experiment.patch_study import run_study

    only = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    summary = run_study(args.run, seeds=parse_seeds(args.seeds) if args.seeds else None, only=only,
                        device=args.device, threads=args.threads, verbose=not args.quiet)
    print(f"study: {summary['run']}/study/study.md; lowest validation PATD: {summary['best']}")
    return 0
