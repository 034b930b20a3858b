"""Training data workers: a subject cache bounded in bytes vs one bounded to 16 subjects.

    .venv/bin/python benchmarks/bench_subject_memory.py [--data DATASET] [--items 200] [--stage color]
                                                        [--loss l1] [--out results_subject_memory.json]

A data worker keeps each subject's sampling state (GT mesh, dense samples, KD-tree, ...) in memory; an
item of a subject that is not held costs a reload from the disk cache (GT mesh read, KD-tree rebuilt).
This times ``TrainItems`` items in the order training draws them (steps of batch 2 over the train
split), in this process, with two budgets:

* **baseline**: the earlier policy, at most 16 subjects (the budget set to 16 subjects' bytes);
* **avatex**: ``SUBJECT_MEMORY`` bytes (``backend.train.data``).

The disk cache is built before timing (a one-off per subject). A dataset with many textured subjects
shows the difference (the protocol's B-train split: 34 avatars; ``RUN/data/b_dev`` of ``avatex
protocol``); without ``--data`` the seven committed sample avatars (three clothed, four anny) are
rendered first (2 views, clear, 128²) and the baseline holds half of them. Prints one JSON object and
writes it to ``--out`` (default: beside this file with ``--data``, else only printed).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.train.config import TrainConfig  # noqa: E402
from backend.train.data import SUBJECT_MEMORY, TrainItems, load_subject, train_items  # noqa: E402
from backend.train.source import open_source  # noqa: E402

OLD_COUNT = 16
FIXTURES = ROOT / "tests" / "fixtures"


def render_samples(out: Path) -> Path:
    """The committed sample avatars (3 clothed OBJ + 4 anny PLY) at 2 views, clear, 128², all in train."""
    meshes = [str(p) for p in sorted((FIXTURES / "valid").glob("*/*.obj"))]
    meshes += [str(p) for p in sorted((FIXTURES / "avatars").glob("avatar_000*.ply"))]
    cmd = [sys.executable, str(ROOT / "render_scripts" / "render_dataset.py"), "--meshes", *meshes,
           "--out", str(out), "--views", "2", "--step", "180", "--levels", "clear", "--resolution", "128",
           "--samples", "2", "--albedo-samples", "1", "--no-denoise", "--test-fraction", "0"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def time_items(cfg: TrainConfig, items, cache: Path, memory_bytes: int, count: int) -> dict:
    data = TrainItems(cfg, items, 128, cache, memory_bytes=memory_bytes)
    loads = 0
    t = time.perf_counter()
    for g in range(count):
        sid = data.item_of(g)[0]
        loads += sid not in data._subjects
        data[g]
    seconds = time.perf_counter() - t
    return {"memory_bytes": memory_bytes, "items": count, "seconds": round(seconds, 2),
            "s_per_item": round(seconds / count, 4), "reloads": loads,
            "held_subjects": len(data._subjects), "held_mb": round(data.held_bytes() / 2 ** 20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="a relit dataset with a train split (default: render the samples)")
    ap.add_argument("--items", type=int, default=200, help="items timed per policy (steps x batch 2)")
    ap.add_argument("--stage", default="color", choices=["color", "geometry"])
    ap.add_argument("--loss", default="l1", choices=["l1", "ssim", "l1+ssim"])
    ap.add_argument("--out", help="JSON file (default: results_subject_memory.json here, with --data)")
    args = ap.parse_args()

    cache = Path(tempfile.mkdtemp(prefix="avatex-bench-cache-"))
    if args.data is None:
        args.data = str(render_samples(cache / "data"))
    elif args.out is None:
        args.out = str(Path(__file__).with_name("results_subject_memory.json"))
    cfg = TrainConfig(data=args.data, out=str(cache / "unused"), stage=args.stage, loss=args.loss,
                      batch=2, cache_dir=str(cache))
    source = open_source(cfg.data)
    items = train_items(source, None, split="train")
    subjects = sorted({sid for sid, _, _ in items})
    t = time.perf_counter()
    sizes = {sid: load_subject(source, sid, cfg, cache).nbytes for sid in subjects}  # builds the disk cache
    build = time.perf_counter() - t
    per_subject = sum(sizes.values()) / len(sizes)
    old_count = min(OLD_COUNT, max(1, len(subjects) // 2))
    old_budget = int(per_subject * old_count)
    baseline = time_items(cfg, items, cache, old_budget, args.items)
    avatex = time_items(cfg, items, cache, SUBJECT_MEMORY, args.items)
    result = {
        "benchmark": "subject_memory", "data": str(Path(args.data).resolve()), "subjects": len(subjects),
        "items_in_split": len(items), "stage": args.stage, "loss": args.loss,
        "subject_mb": {"mean": round(per_subject / 2 ** 20, 1),
                       "max": round(max(sizes.values()) / 2 ** 20, 1)},
        "cache_build_s": round(build, 1),
        "baseline": {"policy": f"at most {old_count} subjects", **baseline},
        "avatex": {"policy": f"SUBJECT_MEMORY = {SUBJECT_MEMORY / 2 ** 30:.0f} GiB", **avatex},
        "ratio_baseline_over_avatex": round(baseline["seconds"] / avatex["seconds"], 2),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
