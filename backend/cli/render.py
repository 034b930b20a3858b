"""avatex render: relit multi-view datasets of human meshes, rendered by Blender (design.md §4).

Runs Blender in worker subprocesses (this Python with the ``bpy`` wheel by default, or a Blender binary
given with --blender) on ``render_scripts/render_dataset.py``. Workers split the (subject, view) units
of this shard between them; re-running the same command resumes (finished views are skipped), and
``--shard I/N`` splits one dataset over N machines writing into a shared folder. A bad mesh is reported
and the others go on; the summary at the end counts rendered, skipped and failed work. The format is
described in docs/dataset.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from avatex_core.render_options import add_arguments, to_argv
from backend.blender import blender_command

HELP = "render a relit dataset (45 views x lighting levels) with Blender"
PREFIX = "@avatex "
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "render_scripts" / "render_dataset.py"


def configure(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
    parser.add_argument("--workers", type=int, default=1,
                        help="parallel Blender processes on this machine (default 1)")
    parser.add_argument("--blender", metavar="PATH",
                        help="a Blender executable to render with (default: this Python's bpy module)")


@dataclass
class Worker:
    """One Blender subprocess and what it reported."""

    index: int
    argv: list[str]
    log: Path
    skip: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    current: str | None = None
    done: dict | None = None
    restarts: int = 0
    pending_images: int = 0
    rendered: int = 0


def _reader(worker: Worker, proc: subprocess.Popen, events: queue.Queue) -> None:
    for line in proc.stdout:
        if line.startswith(PREFIX):
            with contextlib.suppress(ValueError):
                events.put((worker.index, json.loads(line[len(PREFIX):])))
    events.put((worker.index, {"event": "_exit", "code": proc.wait()}))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from avatex_core import dataset_layout as layout
    from avatex_core.lighting import LevelError
    from avatex_core.render_settings import SettingsError, settings_from_args
    from backend.errors import InputError

    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    try:
        settings = settings_from_args(args)  # validate before starting anything
        layout.parse_part(args.shard, "--shard")
    except (SettingsError, LevelError, layout.LayoutError) as exc:
        raise InputError(str(exc)) from None
    files, problems = layout.expand_subject_paths(args.meshes)
    for problem in problems:
        print(f"avatex render: skipping {problem}", file=sys.stderr)
    if not files:
        raise InputError("no subject files to render (see the messages above)")
    try:
        layout.subject_ids(files)
    except layout.LayoutError as exc:
        raise InputError(str(exc)) from None
    out = Path(args.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    shard_tag = args.shard.replace("/", "of")
    mesh_list = logs / f"meshes-shard{shard_tag}.txt"
    mesh_list.write_text("".join(f"{f}\n" for f in files), encoding="utf-8")
    if args.threads == 0 and args.workers > 1:
        args.threads = max(1, (os.cpu_count() or 1) // args.workers)
    base = blender_command(SCRIPT, args.blender) + ["--meshes-file", str(mesh_list), "--out", str(out),
                                            "--progress", "jsonl", *to_argv(args)]
    workers = [Worker(j, base + ["--worker", f"{j}/{args.workers}"],
                      logs / f"render-shard{shard_tag}-worker{j}of{args.workers}.log")
               for j in range(args.workers)]
    events: queue.Queue = queue.Queue()

    def start(w: Worker) -> None:
        argv = w.argv + ["--log", str(w.log)] + (["--skip-subjects", *w.skip] if w.skip else [])
        with open(w.log, "ab") as err:
            w.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                      text=True, bufsize=1, cwd=str(ROOT))
        threading.Thread(target=_reader, args=(w, w.proc, events), daemon=True).start()

    per_view = 1 + len(settings.levels)
    failed: dict[str, str] = {}
    fatal: list[str] = []
    skipped_views = 0
    rendered_images = 0
    t0 = time.perf_counter()
    bar = tqdm(total=0, unit="img", desc="render", dynamic_ncols=True, disable=None)
    for w in workers:
        start(w)
    running = len(workers)
    try:
        while running:
            j, e = events.get()
            w = workers[j]
            kind = e.get("event")
            if kind == "plan":
                w.pending_images = w.rendered + e["images_pending"]
                bar.total = sum(x.pending_images for x in workers)
                if w.restarts == 0:  # a restarted worker sees its own finished views as "done"
                    skipped_views += e["views_total"] - e["views_pending"]
                bar.refresh()
            elif kind == "subject_start":
                w.current = e["subject"]
                bar.set_postfix_str(e["subject"], refresh=False)
            elif kind == "image":
                rendered_images += 1
                w.rendered += 1
                bar.update(1)
            elif kind == "subject_failed":
                w.current = None
                if e["subject"] not in failed:  # every worker with views of it reports it
                    bar.write(f"avatex render: {e['subject']}: {e['error']}")
                failed[e["subject"]] = e["error"]
            elif kind == "subject_done":
                w.current = None
            elif kind == "fatal":
                fatal.append(e["error"])
            elif kind == "done":
                w.done = e
            elif kind == "_exit":
                crashed = w.done is None and not fatal and e["code"] != 0
                if crashed and w.current is not None and w.restarts < len(files):
                    # Blender died inside a subject (a crash in an importer, out of memory...): note it,
                    # and let a fresh worker carry on with the rest of this worker's share.
                    msg = f"Blender exited with code {e['code']} while rendering it (see {w.log})"
                    failed[w.current] = msg
                    bar.write(f"avatex render: {w.current}: {msg}")
                    w.skip.append(w.current)
                    w.current = None
                    w.restarts += 1
                    start(w)
                    continue
                if crashed:
                    fatal.append(f"worker {j} exited with code {e['code']} (see {w.log})")
                running -= 1
    except KeyboardInterrupt:
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.terminate()
        bar.close()
        print("avatex render: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    for message in dict.fromkeys(fatal):
        print(f"avatex render: error: {message}", file=sys.stderr)
    if fatal and not rendered_images:
        return 2
    _record_crashes(out, settings, failed, workers)
    summary = {
        "rendered_images": rendered_images,
        "rendered_views": rendered_images // per_view,
        "skipped_views": skipped_views,
        "failed_subjects": len(failed),
        "input_errors": len(problems),
        "wall_seconds": round(wall, 1),
        "images_per_minute": round(rendered_images / wall * 60.0, 2) if wall > 0 else 0.0,
    }
    print(f"avatex render: {summary['rendered_images']} images rendered ({summary['rendered_views']} views), "
          f"{skipped_views} finished views skipped, {len(failed)} subject(s) failed, "
          f"{len(problems)} input error(s); {summary['images_per_minute']:.1f} images/min "
          f"in {wall:.0f} s -> {out}")
    for sid, message in sorted(failed.items()):
        print(f"  failed {sid}: {message}")
    return 1 if failed or problems or fatal else 0


def _record_crashes(out: Path, settings, failed: dict[str, str], workers: list[Worker]) -> None:
    """Subjects whose worker died never reached the manifest's failure list: add them."""
    from avatex_core import atomic
    from avatex_core import dataset_layout as layout

    crashed = {sid: msg for sid, msg in failed.items() if any(sid in w.skip for w in workers)}
    if crashed and (out / layout.MANIFEST).exists():
        layout.merge_manifest(out, settings.identity(), [v.to_dict() for v in settings.view_list()], {},
                              failed=crashed, write_json=atomic.write_json)
