"""avatex protocol: the paper's comparison across a population change, with seeds and intervals.

Pretrains a baseline on population A (anny avatars with painted clothes, or --population-a), lit clear,
fine-tunes it on population B (real clothed avatars, --population-b, split by person into train /
validation / test) with L1, SSIM-only (the paper's statistics; local), L1 + local SSIM and a compute-matched
clear-light control, for every --seeds value, and reports each cell and each paired difference with a 95 %
bootstrap interval over test subjects. Design choices are made on validation; the test split is evaluated
once, by the report stage. Re-running the same command resumes. docs/experiment.md ("Protocol").
"""

from __future__ import annotations

import argparse
import shlex
import sys

HELP = "population A -> B protocol: six models x seeds, intervals over test subjects, by-person split"
PATHS = ("out", "population_b", "population_a")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder (created, or resumed)")
    parser.add_argument("--population-b", "--meshes", dest="population_b", required=True, metavar="DIR",
                        help="VALID-like folder of real clothed avatars (NAME/NAME.obj, optional index.csv)")
    parser.add_argument("--population-a", metavar="DIR", help="meshes to pretrain on instead of synthesising "
                        "anny avatars (top-level .ply, else .obj, else NAME/NAME.obj)")
    parser.add_argument("--budget", default="small", help="test (smoke), small (< 1 h CPU), medium "
                        "(< 2.5 h CPU) or full (GPU); default small")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated (default 0,1,2)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of B's split by person (default 0)")
    parser.add_argument("--a-seed", type=int, default=0, help="seed of the synthesised A avatars (default 0)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when available)")
    parser.add_argument("--threads", type=int, help="torch threads on the CPU (default: half the cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_seeds(text: str) -> list[int]:
    from backend.errors import InputError

    try:
        return [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds must be comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from avatex_core.progress import Progress
    from backend.experiment.protocol import run_protocol

    def progress(stage: str, fraction: float, info: dict) -> None:
        if fraction == 0.0:
            print(f"[protocol] {stage}", file=sys.stderr, flush=True)

    result = run_protocol(args.out, population_b=args.population_b, population_a=args.population_a,
                          budget=args.budget, seeds=parse_seeds(args.seeds), split_seed=args.split_seed,
                          a_seed=args.a_seed, device=args.device, threads=args.threads,
                          progress=Progress(progress), verbose=not args.quiet,
                          command="avatex protocol " + shlex.join(sys.argv[2:]))
    print(f"report: {result['report']}; validation choice: {result['choice']['best']}")
    return 0
