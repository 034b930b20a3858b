"""Render a relit dataset with Blender worker processes, and the one progress stream they report on.

One API for every caller: ``avatex render`` (``backend/cli/render.py``), the experiment's render stage
and the add-on's Dataset panel build a :class:`RenderRequest` and hand it to :class:`DatasetRender`
(or :func:`render_dataset`, which drives it to the end). A worker is the headless renderer
(``blender_addon.render.runner``) started by a command prefix the caller knows how to build: the CLI's
``backend.blender.blender_command(...)``, the add-on's ``bpy.app.binary_path -b ...``. Workers split the
(subject, view) units of their shard; one that dies inside a subject (an importer crash, out of memory)
has that subject recorded as failed and a fresh worker carries on with the rest of its share.

Progress: a worker appends one line per event, :data:`PREFIX` + JSON, to its own progress file; the
worker writes them with :func:`format_event` and :meth:`DatasetRender.poll` reads them with
:func:`parse_event_line`. Files, not pipes: polling needs no thread and never blocks, so Blender's timer
can drive a render, on every platform. Subprocesses and JSON over this package's settings (numpy,
which Blender ships, is the only other import), so it runs in Blender's Python as in the backend's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import atomic
from . import dataset_layout as layout
from .lighting import LevelError
from .progress import NULL, Progress
from .render_options import to_argv
from .render_settings import RenderSettings, SettingsError, settings_from_args

PREFIX = "@avatex "
"""Marks a progress line; everything else a process writes (Blender's own output) is not an event."""

# Event kinds a worker reports (blender_addon/render/runner.py and loop.py).
PLAN, SUBJECT_START, IMAGE, VIEW_DONE = "plan", "subject_start", "image", "view_done"
SUBJECT_DONE, SUBJECT_FAILED, INPUT_ERROR, FATAL, DONE = (
    "subject_done", "subject_failed", "input_error", "fatal", "done")
WORKER_EXIT = "worker_exit"
"""Added by :class:`DatasetRender` (not a worker): a worker process ended, ``data["code"]``."""

POLL_SECONDS = 0.1


def format_event(event: dict[str, Any]) -> str:
    """One progress line (without the newline)."""
    return PREFIX + json.dumps(event, separators=(",", ":"))


def parse_event_line(line: str) -> dict[str, Any] | None:
    """The event on a progress line, or None for any other line (or a torn or malformed one)."""
    if not line.startswith(PREFIX):
        return None
    try:
        event = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


class RequestError(ValueError):
    """A render request that cannot start; the message names the setting or path."""


@dataclass(frozen=True)
class RenderRequest:
    """What to render, where, and with how many workers; every path absolute.

    Workers run in a folder of the caller's choosing, so nothing may depend on the caller's cwd.
    """

    files: tuple[Path, ...]
    out: Path
    settings: RenderSettings
    options: tuple[str, ...]
    """Worker arguments that reproduce the settings (``render_options.to_argv``)."""
    shard: str = "0/1"
    workers: int = 1
    input_errors: tuple[str, ...] = ()
    """Given paths that were skipped (missing, or not a mesh type), one message each."""

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, workers: int = 1,
                  report: Callable[[str], None] | None = None) -> RenderRequest:
        """The request for options parsed by ``render_options.add_arguments``; validates everything
        before anything starts. ``report`` hears about each skipped input path as it is found."""
        if workers < 1:
            raise RequestError(f"--workers must be >= 1, got {workers}")
        args = argparse.Namespace(**vars(args))
        if args.light_config:
            args.light_config = str(Path(args.light_config).expanduser().resolve())
        if args.threads == 0 and workers > 1:
            args.threads = max(1, (os.cpu_count() or 1) // workers)
        try:
            settings = settings_from_args(args)
            layout.parse_part(args.shard, "--shard")
        except (SettingsError, LevelError, layout.LayoutError) as exc:
            raise RequestError(str(exc)) from None
        files, problems = layout.expand_subject_paths(args.meshes)
        for problem in problems:
            if report is not None:
                report(problem)
        if not files:
            raise RequestError("no subject files to render (see the messages above)" if report is not None
                               else f"no subject files to render ({'; '.join(problems) or 'none given'})")
        try:
            layout.subject_ids(files)
        except layout.LayoutError as exc:
            raise RequestError(str(exc)) from None
        return cls(tuple(files), Path(args.out).expanduser().resolve(), settings, tuple(to_argv(args)),
                   args.shard, workers, tuple(problems))

    @property
    def shard_tag(self) -> str:
        return self.shard.replace("/", "of")


@dataclass(frozen=True)
class RenderEvent:
    """One event of the stream: its kind, the worker that reported it and the event's fields."""

    kind: str
    worker: int
    data: dict[str, Any]


@dataclass(frozen=True)
class RenderSummary:
    """What a finished (or stopped) render did, over all its workers."""

    rendered_images: int
    rendered_views: int
    skipped_views: int
    failed: dict[str, str]
    input_errors: tuple[str, ...]
    fatal: tuple[str, ...]
    wall_seconds: float
    cancelled: bool = False
    repaired: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Subjects whose meshes the renderer repaired, and what it did (``subject.json``: ``hygiene``)."""

    @property
    def images_per_minute(self) -> float:
        return round(self.rendered_images / self.wall_seconds * 60.0, 2) if self.wall_seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """``avatex render``'s exit status: 130 stopped, 2 nothing rendered for a fatal reason, 1 some
        subject or input failed, 0 all done."""
        if self.cancelled:
            return 130
        if self.fatal and not self.rendered_images:
            return 2
        return 1 if self.failed or self.input_errors or self.fatal else 0

    def to_dict(self) -> dict[str, Any]:
        return {"rendered_images": self.rendered_images, "rendered_views": self.rendered_views,
                "skipped_views": self.skipped_views, "failed_subjects": len(self.failed),
                "input_errors": len(self.input_errors), "repaired_subjects": len(self.repaired),
                "wall_seconds": round(self.wall_seconds, 1), "images_per_minute": self.images_per_minute}


@dataclass
class _Worker:
    index: int
    log: Path
    progress: Path
    skip: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    offset: int = 0
    current: str | None = None
    done: dict | None = None
    restarts: int = 0
    pending_images: int = 0
    rendered: int = 0
    ended: bool = False


class DatasetRender:
    """A dataset render in worker processes, advanced by :meth:`poll` (never blocks, no threads).

    ``start()``, then ``poll()`` until ``running`` is False (or ``run()`` does it); ``cancel()`` stops
    the workers. Finished views stay on disk, so rendering the same request again resumes.
    """

    def __init__(self, request: RenderRequest, command: Sequence[str], *, cwd: str | Path | None = None):
        self.request = request
        self.command = list(command)
        self.cwd = str(cwd) if cwd is not None else None
        logs = request.out / "logs"
        self.logs = logs
        self.mesh_list = logs / f"meshes-shard{request.shard_tag}.txt"
        n = request.workers
        self.workers = [_Worker(j, logs / f"render-shard{request.shard_tag}-worker{j}of{n}.log",
                                logs / f"progress-shard{request.shard_tag}-worker{j}of{n}.jsonl")
                        for j in range(n)]
        self.failed: dict[str, str] = {}
        self.repaired: dict[str, tuple[str, ...]] = {}
        self.fatal: list[str] = []
        self.skipped_views = 0
        self.rendered_images = 0
        self.subject = ""
        self.cancelled = False
        self._started: float | None = None
        self._wall = 0.0
        self._summary: RenderSummary | None = None

    # -- state -------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._started is not None and not all(w.ended for w in self.workers)

    @property
    def total_images(self) -> int:
        return sum(w.pending_images for w in self.workers)

    @property
    def fraction(self) -> float:
        if self._summary is not None and not self.cancelled:
            return 1.0
        total = self.total_images
        return min(1.0, self.rendered_images / total) if total else 0.0

    # -- control -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Write the subject list and start every worker."""
        if self._started is not None:
            raise RuntimeError("this render was already started")
        self.logs.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.mesh_list, "".join(f"{f}\n" for f in self.request.files))
        for w in self.workers:
            w.progress.write_text("", encoding="utf-8")  # this run's events only
        self._started = time.perf_counter()
        for w in self.workers:
            self._spawn(w)

    def cancel(self) -> None:
        """Stop every worker (each file they finished is complete: the writes are atomic)."""
        self.cancelled = True
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.terminate()

    def poll(self) -> list[RenderEvent]:
        """Events since the last call; restarts crashed workers, finishes when the last one ends."""
        events: list[RenderEvent] = []
        for w in self.workers:
            if w.ended or w.proc is None:
                continue
            code = w.proc.poll()  # before reading: every line written before the exit is in the file
            for data in self._read(w):
                events += self._handle(w, data)
            if code is not None:
                events += self._exited(w, code)
        if self._started is not None and not self.running and self._summary is None:
            self._finish()
        return events

    def run(self, on_event: Callable[[RenderEvent], None] | None = None, progress: Progress = NULL,
            interval: float = POLL_SECONDS) -> RenderSummary:
        """Start (if needed) and poll to the end. ``on_event`` sees every event; ``progress`` gets the
        fraction of images rendered and cancels the render. Ctrl-C stops the workers and is raised again."""
        if self._started is None:
            self.start()
        try:
            while True:
                for event in self.poll():
                    if on_event is not None:
                        on_event(event)
                    if event.kind in (IMAGE, PLAN):
                        progress.report("render", self.fraction, images=self.rendered_images,
                                        of=self.total_images, subject=self.subject)
                if not self.running:
                    return self.summary()
                if progress.cancelled and not self.cancelled:
                    self.cancel()
                time.sleep(interval)
        except KeyboardInterrupt:
            self.cancel()
            raise

    def summary(self) -> RenderSummary:
        if self._summary is None:
            raise RuntimeError("the render has not finished")
        return self._summary

    # -- internals ---------------------------------------------------------------------------------
    def _argv(self, w: _Worker) -> list[str]:
        r = self.request
        argv = [*self.command, "--meshes-file", str(self.mesh_list), "--out", str(r.out),
                "--progress", "text", "--progress-file", str(w.progress), "--log", str(w.log),
                "--worker", f"{w.index}/{r.workers}", *r.options]
        return argv + (["--skip-subjects", *w.skip] if w.skip else [])

    def _spawn(self, w: _Worker) -> None:
        with open(w.log, "ab") as log:  # a file, not a pipe: a chatty Blender can never block on it
            w.proc = subprocess.Popen(self._argv(w), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      cwd=self.cwd)
        w.done, w.current = None, None

    def _read(self, w: _Worker) -> Iterable[dict[str, Any]]:
        try:
            with open(w.progress, "rb") as fh:
                fh.seek(w.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1  # complete lines only; a torn last line is read next time
        w.offset += end
        lines = chunk[:end].decode("utf-8", "replace").splitlines()
        return [e for e in map(parse_event_line, lines) if e is not None]

    def _handle(self, w: _Worker, data: dict[str, Any]) -> list[RenderEvent]:
        kind = data["event"]
        if kind == PLAN:
            w.pending_images = w.rendered + int(data.get("images_pending", 0))
            if w.restarts == 0:  # a restarted worker sees its own finished views as "done"
                self.skipped_views += int(data.get("views_total", 0)) - int(data.get("views_pending", 0))
        elif kind == SUBJECT_START:
            w.current = data.get("subject")
            self.subject = w.current or ""
        elif kind == IMAGE:
            w.rendered += 1
            self.rendered_images += 1
        elif kind == SUBJECT_FAILED:
            w.current = None
            sid = str(data.get("subject"))
            first = sid not in self.failed
            self.failed[sid] = str(data.get("error"))
            if not first:  # every worker with views of the subject reports it: one event is enough
                return []
        elif kind == SUBJECT_DONE:
            w.current = None
            if data.get("repairs"):
                self.repaired[str(data.get("subject"))] = tuple(str(r) for r in data["repairs"])
        elif kind == FATAL:
            self.fatal.append(str(data.get("error")))
        elif kind == DONE:
            w.done = data
        return [RenderEvent(kind, w.index, data)]

    def _exited(self, w: _Worker, code: int) -> list[RenderEvent]:
        crashed = w.done is None and not self.fatal and code != 0 and not self.cancelled
        if crashed and w.current is not None and w.restarts < len(self.request.files):
            # Blender died inside a subject: note it, and let a fresh worker carry on with the rest.
            sid = w.current
            message = f"Blender exited with code {code} while rendering it (see {w.log})"
            self.failed[sid] = message
            w.skip.append(sid)
            w.restarts += 1
            self._spawn(w)
            return [RenderEvent(SUBJECT_FAILED, w.index, {"event": SUBJECT_FAILED, "subject": sid,
                                                          "error": message, "crashed": True})]
        w.ended = True
        events = [RenderEvent(WORKER_EXIT, w.index, {"event": WORKER_EXIT, "code": code})]
        if crashed:
            message = f"worker {w.index} exited with code {code} (see {w.log})"
            self.fatal.append(message)
            events.append(RenderEvent(FATAL, w.index, {"event": FATAL, "error": message}))
        return events

    def _finish(self) -> None:
        self._wall = time.perf_counter() - (self._started or time.perf_counter())
        crashed = {sid: msg for sid, msg in self.failed.items() if any(sid in w.skip for w in self.workers)}
        if crashed and (self.request.out / layout.MANIFEST).exists():
            # A worker that died never wrote these failures into the manifest itself.
            s = self.request.settings
            layout.merge_manifest(self.request.out, s.identity(), [v.to_dict() for v in s.view_list()], {},
                                  failed=crashed, write_json=atomic.write_json)
        per_view = 1 + len(self.request.settings.levels)
        self._summary = RenderSummary(
            rendered_images=self.rendered_images, rendered_views=self.rendered_images // per_view,
            skipped_views=self.skipped_views, failed=dict(sorted(self.failed.items())),
            input_errors=self.request.input_errors, fatal=tuple(dict.fromkeys(self.fatal)),
            wall_seconds=self._wall, cancelled=self.cancelled, repaired=dict(sorted(self.repaired.items())))


def render_dataset(request: RenderRequest, *, command: Sequence[str], cwd: str | Path | None = None,
                   on_event: Callable[[RenderEvent], None] | None = None,
                   progress: Progress = NULL) -> RenderSummary:
    """Render ``request`` to the end (blocking): for command-line callers."""
    return DatasetRender(request, command, cwd=cwd).run(on_event, progress)
