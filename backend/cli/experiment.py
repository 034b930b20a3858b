"""avatex experiment: the paper's experiment end to end in one resumable command.

Makes sample avatars (or uses --data / --meshes), renders them relit (views x wild/intermediate/clear),
trains a baseline from scratch on clear renders (geometry stage, then colour stage with L1), fine-tunes
its colour net twice on every level with netG frozen (L1; 3D patch-wise SSIM), evaluates the three models
on the held-out subjects per level and writes the paper-layout table, plots, side-by-side images and a
report to RUN/results. Re-running the same command skips finished stages and resumes the others.
Budgets: `small` (about an hour on a 2-core CPU), `full` (a GPU), `test` (seconds; the test suite).
docs/experiment.md has the details.
"""

from __future__ import annotations

import argparse
import sys

HELP = "reproduce the paper's experiment: synth, render, baseline + L1/patch-SSIM fine-tunes, table, report"
PATHS = ("out", "data", "meshes")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder (created, or resumed)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="DATASET", help="an existing relit dataset with a test split")
    src.add_argument("--meshes", nargs="+", metavar="MESH", help="textured meshes to render instead of "
                     "synthesised avatars (a share is held out)")
    src.add_argument("--subjects", type=int, metavar="N", help="number of avatars to synthesise "
                     "(default: the budget's)")
    parser.add_argument("--budget", default="small", help="small (CPU, ~1 h), full (GPU) or test (seconds); "
                        "default small")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the avatars, lights and training (default 0)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when available)")
    parser.add_argument("--threads", type=int, help="torch threads on the CPU (default: half the cores)")
    parser.add_argument("--quiet", action="store_true", help="stage lines only, no progress bars")


def run(args: argparse.Namespace) -> int:
    import signal
    import time

    from avatex_core.progress import Progress, format_duration
    from backend.errors import CancelledError
    from backend.experiment import run_experiment
    from backend.experiment.report import quote_command

    stop = {"requested": False}
    last = {"stage": None, "printed": 0.0}

    def on_sigint(signum, frame):
        stop["requested"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\navatex experiment: stopping after this step (Ctrl-C again to abort); the same command "
              "resumes", file=sys.stderr)

    def progress(stage: str, fraction: float, info: dict) -> None:
        now = time.monotonic()
        new_stage = stage != last["stage"]
        if new_stage:
            last["stage"] = stage
            state = "done earlier, skipped" if info.get("skipped") else info.get("title", stage)
            print(f"[{info.get('stage_index')}/{info.get('stages')}] {stage}: {state} "
                  f"(elapsed {format_duration(info.get('elapsed_s'))}, "
                  f"ETA {format_duration(info.get('eta_s'))})",
                  file=sys.stderr, flush=True)
            last["printed"] = now
        elif "wall_s" in info:
            print(f"      {stage} finished in {format_duration(info['wall_s'])}", file=sys.stderr, flush=True)
            last["printed"] = now
        elif not info.get("skipped") and now - last["printed"] >= (60.0 if not args.quiet else 300.0):
            print(f"      {stage}: {100 * fraction:.0f} % of the experiment, "
                  f"ETA {format_duration(info.get('eta_s'))}", file=sys.stderr, flush=True)
            last["printed"] = now

    command = "avatex experiment " + quote_command(sys.argv[2:] if len(sys.argv) > 2 and
                                                   sys.argv[1] == "experiment" else _argv_of(args))
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = run_experiment(args.out, budget=args.budget, data=args.data, meshes=args.meshes,
                                subjects=args.subjects, seed=args.seed, device=args.device,
                                threads=args.threads,
                                progress=Progress(progress, should_stop=lambda: stop["requested"]),
                                verbose=not args.quiet,
                                command=command)
    except CancelledError as exc:
        print(f"avatex experiment: {exc}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    from backend.experiment.report import LABELS, labelled
    from backend.metrics.table import to_markdown

    print(to_markdown(labelled(result["table"], LABELS)))
    print(f"results: {result['results']} (report.md, table.md, plots/, images/); "
          f"models: {result['run']}/models; wall time this run {format_duration(result['wall_s'])}")
    return 0


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The options as they would be typed (when called from Python rather than the shell)."""
    out = ["--out", str(args.out), "--budget", str(args.budget), "--seed", str(args.seed)]
    if args.data:
        out += ["--data", str(args.data)]
    if args.meshes:
        out += ["--meshes", *map(str, args.meshes)]
    if args.subjects is not None:
        out += ["--subjects", str(args.subjects)]
    if args.device:
        out += ["--device", str(args.device)]
    if args.threads:
        out += ["--threads", str(args.threads)]
    return out
