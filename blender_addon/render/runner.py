"""Headless entry: render a dataset (or this worker's share of it) inside one Blender process.

Used by ``render_scripts/render_dataset.py`` (``blender -b -P ... -- ARGS`` or ``python ... ARGS`` with
the bpy wheel) and, as the workers of ``avatex_core.render_jobs.DatasetRender``, by ``avatex render``,
the experiment and the add-on's Dataset panel. Progress goes out as the event lines of
:mod:`avatex_core.render_jobs` (or short human lines) on the original stdout, and to ``--progress-file``;
Blender's own chatter is redirected to a log file so that it cannot interleave.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from avatex_core import dataset_layout as layout
from avatex_core.lighting import LevelError
from avatex_core.render_jobs import format_event
from avatex_core.render_options import add_arguments
from avatex_core.render_settings import SettingsError, settings_from_args


class Reporter:
    """Writes progress events as event lines (``jsonl``) or short human lines (``text``)."""

    def __init__(self, stream, mode: str) -> None:
        self.stream = stream
        self.mode = mode

    def __call__(self, event: dict[str, Any]) -> None:
        if self.mode == "jsonl":
            line = format_event(event)
        else:
            line = _human(event)
            if line is None:
                return
        self.stream.write(line + "\n")
        self.stream.flush()


class _Tee:
    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    def __call__(self, event: dict[str, Any]) -> None:
        for r in self.reporters:
            r(event)


def _human(e: dict[str, Any]) -> str | None:
    kind = e.get("event")
    if kind == "plan":
        return (f"[avatex] {e['subjects']} subject(s), {e['views_pending']} of {e['views_total']} views to "
                f"render ({e['images_pending']} images)")
    if kind == "subject_start":
        return f"[avatex] {e['subject']}: {e['source']}"
    if kind == "subject_done" and e.get("repairs"):
        return f"[avatex] {e['subject']}: mesh repaired: {'; '.join(e['repairs'])}"
    if kind == "view_done":
        return f"[avatex]   {e['subject']} view {e['view']} done"
    if kind in ("subject_failed", "input_error", "fatal"):
        return f"[avatex] error: {e.get('subject') or ''}{': ' if e.get('subject') else ''}{e['error']}"
    if kind == "done":
        return (f"[avatex] rendered {e['rendered_images']} images ({e['rendered_views']} views), skipped "
                f"{e['skipped_views']} finished views, {len(e['failed'])} failed subject(s); "
                f"{e['images_per_minute']:.1f} images/min")
    return None


def _redirect_stdout(log_path: Path | None):
    """Keep the real stdout for progress; send fd 1 (Blender's C-level prints) to the log.

    Returns (progress stream, saved fd 1) so that :func:`_restore_stdout` can undo it.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    progress = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    else:
        fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.close(fd)
    return progress, saved


def _restore_stdout(saved: int) -> None:
    sys.stdout.flush()
    os.dup2(saved, 1)
    os.close(saved)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="render_dataset", description=__doc__.splitlines()[0])
    add_arguments(p, meshes_required=False)
    p.add_argument("--meshes-file", metavar="FILE", help="more subject paths, one per line")
    p.add_argument("--worker", default="0/1", metavar="J/W", help="this process's share within the shard")
    p.add_argument("--skip-subjects", nargs="*", default=[], metavar="ID", help="subject ids to leave out")
    p.add_argument("--progress", choices=("text", "jsonl"), default="text")
    p.add_argument("--progress-file", metavar="FILE",
                   help="also append progress as event lines to FILE (read by avatex_core.render_jobs)")
    p.add_argument("--log", metavar="FILE", help="Blender's output (default DATASET/logs/render-*.log)")
    p.add_argument("--rerender", nargs=4, metavar=("SUBJECT", "VIEW", "LEVEL", "OUT"),
                   help="render one stored image again from its records into OUT, then exit")
    args = p.parse_args(argv)
    if args.meshes_file:
        lines = Path(args.meshes_file).read_text(encoding="utf-8").splitlines()
        args.meshes = list(args.meshes) + [ln.strip() for ln in lines if ln.strip()]
    if not args.meshes and not args.rerender:
        p.error("no subjects: give --meshes PATH... or --meshes-file FILE")
    root = Path(args.out)
    log = Path(args.log) if args.log else root / "logs" / (
        f"render-shard{args.shard.replace('/', 'of')}-worker{args.worker.replace('/', 'of')}.log")
    progress, saved_stdout = _redirect_stdout(None if args.log == "-" else log)
    emit = Reporter(progress, args.progress)
    progress_file = None
    if args.progress_file:
        progress_file = open(args.progress_file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        emit = _Tee(emit, Reporter(progress_file, "jsonl"))
    try:
        if args.rerender:
            from .loop import rerender_image

            sid, view_name, level, out = args.rerender
            entry = rerender_image(root, sid, view_name, level, Path(out))
            emit({"event": "rerendered", "subject": sid, "view": view_name, "level": level, "entry": entry})
            return 0
        return run(args, root, emit)
    except (SettingsError, LevelError, layout.LayoutError) as exc:
        emit({"event": "fatal", "error": str(exc)})
        return 2
    except Exception as exc:
        if type(exc).__name__ == "EngineUnavailable":
            emit({"event": "fatal", "error": str(exc)})
            return 2
        emit({"event": "fatal", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 3
    finally:
        if progress_file is not None:
            progress_file.close()
        progress.close()
        _restore_stdout(saved_stdout)  # callers in the same process get their stdout back


def run(args: argparse.Namespace, root: Path, emit) -> int:
    from avatex_core import atomic

    from . import compat, loop

    t_start = time.perf_counter()
    settings = settings_from_args(args)
    if settings.engine == "eevee":
        compat.require_gpu_for_eevee()
    elif settings.device == "gpu" and not compat.gpu_devices()[0]:
        raise compat.EngineUnavailable("--device gpu: Cycles finds no GPU "
                                       "(OptiX, CUDA, HIP, oneAPI or Metal)")
    shard = layout.parse_part(args.shard, "--shard")
    worker = layout.parse_part(args.worker, "--worker")
    files, problems = layout.expand_subject_paths(args.meshes)
    ids = layout.subject_ids(files)
    views = settings.view_list()
    by_index = {v.index: v for v in views}
    indices = [v.index for v in views]
    skip = set(args.skip_subjects)
    plan = {sid: layout.my_views(sid, indices, shard, worker) for sid in ids if sid not in skip}
    plan = {sid: v for sid, v in plan.items() if v}
    identity = settings.identity()
    ihash = layout.identity_hash(identity)
    entries = {sid: {"split": layout.split_of(sid, settings.test_fraction, settings.seed),
                     "dir": f"{layout.SUBJECTS}/{sid}", "source": str(ids[sid])} for sid in plan}
    layout.merge_manifest(root, identity, [v.to_dict() for v in views], entries, write_json=atomic.write_json,
                          created_by=f"avatex / Blender {loop.blender_version()}")

    def unfinished(sid: str, k: int) -> bool:
        return not layout.view_finished(layout.view_dir(root, sid, by_index[k].name), settings.levels, ihash)

    pending = {sid: sum(unfinished(sid, k) for k in ks) for sid, ks in plan.items()}
    per_view = 1 + len(settings.levels)
    emit({"event": "plan", "subjects": len(plan), "views_total": sum(map(len, plan.values())),
          "views_pending": sum(pending.values()), "images_pending": sum(pending.values()) * per_view,
          "images_per_view": per_view, "shard": args.shard, "worker": args.worker})
    failed: dict[str, str] = {}
    for problem in problems:
        emit({"event": "input_error", "error": problem})
    totals = {"rendered_images": 0, "rendered_views": 0, "skipped_views": 0, "render_seconds": 0.0}
    for sid in sorted(plan):
        mine = [by_index[k] for k in plan[sid]]
        emit({"event": "subject_start", "subject": sid, "source": str(ids[sid]), "views": len(mine),
              "pending": pending[sid]})
        try:
            stats = loop.render_subject(
                root, sid, ids[sid], settings, mine,
                write_subject=layout.owns_subject_files(sid, indices, shard, worker), emit=emit)
        except Exception as exc:  # one bad subject must not stop the others
            message = str(exc) if isinstance(exc, ValueError | OSError) else f"{type(exc).__name__}: {exc}"
            failed[sid] = message
            emit({"event": "subject_failed", "subject": sid, "error": message,
                  "traceback": traceback.format_exc()})
            layout.merge_manifest(root, identity, [v.to_dict() for v in views], {}, failed={sid: message},
                                  write_json=atomic.write_json)
            continue
        for key in totals:
            totals[key] += stats[key]
        emit({"event": "subject_done", **stats})
        layout.merge_manifest(root, identity, [v.to_dict() for v in views], {}, succeeded=[sid],
                              write_json=atomic.write_json)
    wall = time.perf_counter() - t_start
    emit({"event": "done", **totals, "failed": sorted(failed), "input_errors": len(problems),
          "wall_seconds": round(wall, 3),
          "images_per_minute": round(totals["rendered_images"] / wall * 60.0, 3) if wall > 0 else 0.0})
    return 1 if failed or problems else 0
