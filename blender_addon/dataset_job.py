"""The Dataset panel's render job: a thin user of the render library API (``avatex_core.render_jobs``).

:meth:`DatasetJob.start` turns the scene's Dataset settings into a render request and starts a
background Blender (``bpy.app.binary_path -b``; under the ``bpy`` module, this Python) on the add-on's
own copy of the renderer. Scene subjects (selected objects, a collection) are first written to .blend
files in a temporary folder. The add-on's one timer (:mod:`.runtime`) calls :meth:`DatasetJob.poll`,
which reads the workers' progress without blocking and copies it into the panel's properties. Cancel
stops the workers; every file they wrote is complete (atomic writes), so rendering the same dataset
again resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import bpy

import avatex_core
from avatex_core import render_jobs as jobs
from avatex_core.render_options import add_arguments

from . import dataset_export
from .dataset_properties import chosen_levels


def _package_location() -> tuple[str, str]:
    """(folder to put on sys.path, package name) of this add-on: ``blender_addon`` in a checkout,
    the extension's folder name when installed."""
    pkg = Path(__file__).resolve().parent
    return str(pkg.parent), pkg.name


def worker_command() -> list[str]:
    """The command prefix of a background Blender running this add-on's renderer on the arguments
    after it (the render API appends them)."""
    parent, name = _package_location()
    core = str(Path(avatex_core.__file__).resolve().parents[1])  # the bundled wheel's site folder
    expr = (f"import sys, importlib; [sys.path.insert(0, p) for p in ({core!r}, {parent!r}) if p not in "
            f"sys.path]; sys.exit(importlib.import_module({name + '.render.runner'!r})"
            ".main(sys.argv[sys.argv.index('--') + 1:]))")
    if bpy.app.binary_path:
        return [bpy.app.binary_path, "-b", "--factory-startup", "--python-exit-code", "3",
                "--python-expr", expr, "--"]
    return [sys.executable, "-c", expr, "--"]  # the bpy module: this Python is the Blender


def render_options(props, subjects: list[str], out: Path) -> list[str]:
    """``avatex render`` options for the Dataset settings (raises ValueError on a bad choice)."""
    levels = chosen_levels(props)
    if not levels:
        raise ValueError("choose at least one lighting level")
    argv = ["--meshes", *subjects, "--out", str(out), "--views", str(props.views), "--step", str(props.step),
            "--levels", ",".join(levels), "--resolution", str(props.resolution), "--engine",
            props.engine.lower(), "--samples", str(props.samples), "--seed", str(props.seed),
            "--up", props.up.lower()]
    if props.light_config:
        argv += ["--light-config", bpy.path.abspath(props.light_config)]
    return argv


def _request(argv: list[str]) -> jobs.RenderRequest:
    parser = argparse.ArgumentParser(prog="avatex render")
    add_arguments(parser)
    try:
        return jobs.RenderRequest.from_args(parser.parse_args(argv))
    except jobs.RequestError as exc:
        raise ValueError(str(exc)) from None


class DatasetJob:
    """The session's one dataset render (a new one may start once the last has ended)."""

    def __init__(self) -> None:
        self.render: jobs.DatasetRender | None = None
        self.errors: list[str] = []
        self.temp_dir: Path | None = None

    @property
    def running(self) -> bool:
        return self.render is not None and self.render.running

    def start(self, context) -> jobs.DatasetRender:
        """Start rendering the scene's Dataset settings; raises ValueError (or OSError) on bad input."""
        if self.running:
            raise ValueError("a dataset render is already running; cancel it first")
        props = context.scene.avatex_dataset
        if not props.output_dir:
            raise ValueError("choose an output folder")
        out = Path(bpy.path.abspath(props.output_dir))
        temp_dir = None
        if props.source == "FILES":
            subjects = [bpy.path.abspath(p.strip()) for p in props.files.split(";") if p.strip()]
            missing = [p for p in subjects if not os.path.exists(p)]
            if not subjects or missing:
                raise ValueError(f"subject files not found: {'; '.join(missing) or '(none given)'}")
        else:
            groups = dataset_export.subject_groups(props, context)
            temp_dir = Path(tempfile.mkdtemp(prefix="avatex_subjects_"))
        try:
            if temp_dir is not None:
                subjects = [str(p) for p in dataset_export.write_subject_blends(groups, temp_dir)]
            request = _request(render_options(props, subjects, out))
            render = jobs.DatasetRender(request, worker_command())
            render.start()
        except BaseException:
            if temp_dir is not None:
                shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        self.render, self.errors, self.temp_dir = render, list(request.input_errors), temp_dir
        props.is_running, props.progress, props.status = True, 0.0, "starting Blender..."
        return render

    def cancel(self) -> bool:
        """Stop the running render; False when none runs."""
        if not self.running:
            return False
        self.render.cancel()
        return True

    def poll(self) -> bool:
        """One timer step: read new progress, update the panel; True when there was something new."""
        render = self.render
        if render is None or not render.running:
            return False  # none, or ended and already shown
        events = render.poll()
        for event in events:
            if event.kind in (jobs.SUBJECT_FAILED, jobs.FATAL, jobs.INPUT_ERROR):
                who = event.data.get("subject")
                self.errors.append(f"{who}: {event.data['error']}" if who else str(event.data["error"]))
        props = getattr(bpy.context.scene, "avatex_dataset", None)
        if props is None:
            return bool(events)
        props.progress = render.fraction
        if render.running:
            props.status = (f"{render.rendered_images}/{render.total_images} images"
                            + (f" - {render.subject}" if render.subject else "") if render.total_images
                            else "preparing...")
            return True
        props.is_running = False
        props.status = self._final_status(render.summary())
        self._cleanup()
        return True

    def _final_status(self, s: jobs.RenderSummary) -> str:
        if s.cancelled:
            status = f"cancelled after {s.rendered_images} images (render again to resume)"
        elif s.fatal:
            status = f"render stopped: {s.fatal[-1]} (see {self.render.logs})"
        else:
            status = (f"done: {s.rendered_images} images, {s.skipped_views} views skipped, "
                      f"{len(s.failed) + len(s.input_errors)} failed")
            if s.repaired:
                status += f", {len(s.repaired)} mesh(es) repaired (subject.json: hygiene)"
        if self.errors and not s.fatal:
            status += f" | {self.errors[-1]}"
        return status

    def _cleanup(self) -> None:
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def shutdown(self) -> None:
        """Unregister: stop the render and remove the temporary subject files."""
        self.cancel()
        self._cleanup()
