"""Run every benchmark and collect their JSON into one file.

    .venv/bin/python benchmarks/run_all.py [--out benchmarks/results.json] [--only render,metrics] [--quick]

Each ``bench_<area>.py`` measures avatex against a baseline in the same run and prints one JSON object
with its figures and ratios; this runs them one after another (never in parallel: they would disturb
each other's timings) and writes ``{area: result}``, with the machine's load average before each.
``--quick`` passes each benchmark's smaller settings, for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK_ARGS = {
    "geometry": ["--samples", "20000", "--repeats", "1", "--old-samples", "200"],
    "mesh_import": ["--size", "300", "--repeats", "1"],
    "metrics": ["--n", "100000", "--repeat", "1"],
    "protocol": ["--repeats", "1", "--seconds", "1"],
    "reconstruct": ["--resolution", "64", "--repeats", "1", "--dense-sample", "5000"],
    "render": ["--subject", "avatar", "--views", "1", "--resolution", "128"],
    "subject_memory": ["--items", "40"],
    "server_memory": ["--echoes", "20", "--images", "6", "--image-mb", "50", "--seconds", "8"],
    "synth": ["--size", "256", "--repeats", "1"],
    "train": ["--steps", "1", "--repeats", "1", "--points", "500"],
}


def last_json_object(text: str) -> dict:
    """The last top-level JSON object printed (benchmarks may log lines before it); objects nested in
    it are skipped, not returned."""
    decoder = json.JSONDecoder()
    found, i = None, 0
    while (start := text.find("{", i)) >= 0:
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        found, i = obj, end
    if found is None:
        raise ValueError("no JSON object in the benchmark's output")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    ap.add_argument("--only", help="comma-separated areas (default: every bench_*.py)")
    ap.add_argument("--quick", action="store_true", help="small settings, for a smoke run")
    args = ap.parse_args(argv)
    areas = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(areas))
        if unknown:
            ap.error(f"unknown benchmark(s) {', '.join(unknown)}; have {', '.join(areas)}")
        areas = wanted
    results: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                 "platform": platform.platform()}, "benchmarks": {}}
    for area in areas:
        extra = QUICK_ARGS.get(area, []) if args.quick else []
        cmd = [sys.executable, str(HERE / f"bench_{area}.py"), *extra]
        load = os.getloadavg()[0]
        print(f"[{area}] {' '.join(cmd[1:])} (load {load:.1f})", file=sys.stderr, flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        entry: dict = {"seconds": round(time.perf_counter() - t, 1), "load_before": round(load, 2),
                       "args": cmd[2:]}
        log = args.out.parent / "logs" / f"{area}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(proc.stdout + proc.stderr)
        entry["log"] = str(log.relative_to(args.out.parent))
        if proc.returncode != 0:
            entry["error"] = (proc.stdout + proc.stderr)[-2000:]
        else:
            try:
                entry["result"] = last_json_object(proc.stdout)
            except ValueError as exc:
                entry["error"] = f"{exc}: {proc.stdout[-500:]}"
        results["benchmarks"][area] = entry
        args.out.write_text(json.dumps(results, indent=2) + "\n")  # partial results survive a crash
    failed = [a for a, e in results["benchmarks"].items() if "error" in e]
    print(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
