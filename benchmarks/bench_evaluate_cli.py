"""Benchmark: ``avatex evaluate`` end to end, as a user runs it, on the game-style character.

    .venv/bin/python benchmarks/bench_evaluate_cli.py [--repeats 3] [--out results_evaluate_cli.json]

The meshes are ``tests/helpers/game_character.py``'s character (~12k vertices, ~49k faces, every face
duplicated in reverse winding, triangle sizes spanning over 100x) and a jittered copy, written as binary
PLY (what ``avatex reconstruct`` writes). Each variant is a fresh ``python -m backend evaluate --pred
--gt --json --device cpu`` process with the defaults (500k dense GT samples, 100k geometry samples per
mesh), so interpreter start-up and imports count, as they do for the user:

* ``avatex``: the command as shipped;
* ``baseline``: the same command with the previous start-up, measured in the same run: every
  subcommand configured (``build_parser()``) and both meshes read by trimesh.

Prints (and writes) one JSON document: best and all wall times and CPU times per variant, the ratio
``baseline / avatex``, the machine's core count and load average before the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.meshio import save_mesh  # noqa: E402
from tests.helpers.game_character import game_character, jittered  # noqa: E402

BASELINE = (
    "import sys\n"
    "from backend import meshio\n"
    "from backend.cli import build_parser\n"
    "import backend.cli as cli\n"
    "meshio._read_simple_ply = lambda path: None\n"
    "full = build_parser\n"
    "cli.build_parser = lambda command=None: full(None)\n"
    "raise SystemExit(cli.main(sys.argv[1:]))\n"
)


def _run(argv: list[str]) -> tuple[float, float, dict]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        gv, gf, gc = game_character()
        pv, pc = jittered(gv, gc)
        gt, pred = Path(tmp) / "gt.ply", Path(tmp) / "pred.ply"
        save_mesh(gt, gv, gf, gc)
        save_mesh(pred, pv, gf, pc)
        tail = ["evaluate", "--pred", str(pred), "--gt", str(gt), "--json", "--device", "cpu"]
        variants = {"avatex": [sys.executable, "-m", "backend", *tail],
                    "baseline": [sys.executable, "-c", BASELINE, *tail]}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        reports = {}
        for _ in range(args.repeats):  # interleaved, so a load spike hits both variants alike
            for name, argv in variants.items():
                wall, cpu, reports[name] = _run(argv)
                times[name].append((wall, cpu))
    same = all(reports["avatex"][key] == reports["baseline"][key]
               for key in ("patd_mean", "pipatd_mean", "patd_dense_mean", "pipatd_dense_mean", "geometry"))
    best = {name: min(w for w, _ in runs) for name, runs in times.items()}
    result = {
        "benchmark": "avatex evaluate, game-style character, fresh process per run",
        "vertices": int(len(gv)), "faces": int(len(gf)),
        "cores": os.cpu_count(), "load_average_before": round(load, 2),
        "wall_s": {name: [round(w, 3) for w, _ in runs] for name, runs in times.items()},
        "cpu_s": {name: [round(c, 3) for _, c in runs] for name, runs in times.items()},
        "best_wall_s": {name: round(v, 3) for name, v in best.items()},
        "ratio_baseline_over_avatex": round(best["baseline"] / best["avatex"], 2),
        "same_figures": same,
        "stage_seconds": reports["avatex"]["seconds"],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
