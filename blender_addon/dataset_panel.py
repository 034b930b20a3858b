"""The add-on's Dataset panel: render a relit dataset of files or scene objects without freezing Blender.

The render runs in a background Blender (``bpy.app.binary_path -b``; under the ``bpy`` module, this
Python) on the add-on's own copy of the renderer. Scene subjects (selected objects, a collection) are
first written to a temporary .blend. The subprocess appends progress as JSON lines to a file, which a
``bpy.app.timers`` callback, :func:`poll_render_job`, reads: no threads, no pipes, no modal loop.
Cancel terminates the subprocess; every file it wrote is complete (atomic writes), so rendering the
same dataset again resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

PREFIX = "@avatex "
POLL_SECONDS = 0.5
BUILTIN_LEVELS = ("wild", "intermediate", "clear", "hdri")


@dataclass
class RenderJob:
    """One background render: its process, progress file and what it reported so far."""

    argv: list[str]
    out: Path
    progress_path: Path
    log_path: Path
    temp_dir: Path | None = None
    proc: subprocess.Popen | None = None
    offset: int = 0
    total: int = 0
    done_images: int = 0
    subject: str = ""
    errors: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # subjects whose meshes the renderer repaired
    summary: dict | None = None
    cancelled: bool = False

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress_path.parent.mkdir(parents=True, exist_ok=True)
        self.progress_path.write_text("", encoding="utf-8")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def read_events(self) -> list[dict]:
        """New events since the last call (complete lines only)."""
        try:
            with open(self.progress_path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        events = []
        for line in chunk[:end].decode("utf-8", "replace").splitlines():
            if line.startswith(PREFIX):
                try:
                    events.append(json.loads(line[len(PREFIX):]))
                except ValueError:
                    continue
        return events

    def apply(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "plan":
            self.total = int(event.get("images_pending", 0))
        elif kind == "image":
            self.done_images += 1
        elif kind == "subject_start":
            self.subject = event.get("subject", "")
        elif kind in ("subject_failed", "fatal", "input_error"):
            who = event.get("subject")
            self.errors.append(f"{who}: {event['error']}" if who else event["error"])
        elif kind == "subject_done" and event.get("repairs"):
            self.repaired.append(event.get("subject", ""))
        elif kind == "done":
            self.summary = event

    @property
    def fraction(self) -> float:
        return 1.0 if self.summary is not None else (self.done_images / self.total if self.total else 0.0)

    def cancel(self) -> None:
        self.cancelled = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def cleanup(self) -> None:
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None


_JOB: RenderJob | None = None


def current_job() -> RenderJob | None:
    return _JOB


def _package_location() -> tuple[str, str]:
    """(folder to put on sys.path, package name) of this add-on: ``blender_addon`` in a checkout,
    the extension's folder name when installed."""
    pkg = Path(__file__).resolve().parent
    return str(pkg.parent), pkg.name


def worker_command(args: list[str]) -> list[str]:
    """Command line of a background Blender running this add-on's renderer with ``args``."""
    parent, name = _package_location()
    expr = (f"import sys; sys.path.insert(0, {parent!r}); import importlib; "
            f"sys.exit(importlib.import_module({name + '.render.runner'!r}).main({args!r}))")
    if bpy.app.binary_path:
        return [bpy.app.binary_path, "-b", "--factory-startup", "--python-exit-code", "3",
                "--python-expr", expr]
    return [sys.executable, "-c", expr]  # the bpy module: this Python is the Blender


def _subject_blends(props, context, folder: Path) -> list[Path]:
    """Write the scene subjects to .blend files named after them (one file per subject)."""
    groups: list[tuple[str, list]] = []
    if props.source == "SELECTED":
        objects = [ob for ob in context.selected_objects if ob.type == "MESH"]
        if not objects:
            raise ValueError("select at least one mesh object to render")
        name = (context.active_object or objects[0]).name
        groups.append((name, objects))
    else:
        coll = props.collection
        if coll is None:
            raise ValueError("choose a collection to render")
        children = [c for c in coll.children if any(o.type == "MESH" for o in c.all_objects)]
        for c in children or [coll]:
            groups.append((c.name, [o for o in c.all_objects if o.type == "MESH"]))
        groups = [g for g in groups if g[1]]
        if not groups:
            raise ValueError(f"collection {coll.name!r} holds no mesh objects")
    paths = []
    for name, objects in groups:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "subject"
        path = folder / f"{safe}.blend"
        bpy.data.libraries.write(str(path), set(objects), path_remap="ABSOLUTE", compress=False)
        paths.append(path)
    return paths


def build_args(props, subjects: list[str], out: Path, progress_path: Path, log_path: Path) -> list[str]:
    levels = [lv for lv in BUILTIN_LEVELS if getattr(props, f"level_{lv}")]
    levels += [lv.strip() for lv in props.extra_levels.split(",") if lv.strip()]
    if not levels:
        raise ValueError("choose at least one lighting level")
    args = ["--meshes", *subjects, "--out", str(out), "--views", str(props.views), "--step", str(props.step),
            "--levels", ",".join(levels), "--resolution", str(props.resolution), "--engine",
            props.engine.lower(), "--samples", str(props.samples), "--seed", str(props.seed),
            "--up", props.up.lower(), "--progress", "jsonl", "--progress-file", str(progress_path),
            "--log", str(log_path)]
    if props.light_config:
        args += ["--light-config", bpy.path.abspath(props.light_config)]
    return args


def start_render(context) -> RenderJob:
    """Start the background render for the scene's Dataset settings (raises ValueError on bad input)."""
    global _JOB
    if _JOB is not None and _JOB.proc is not None and _JOB.proc.poll() is None:
        raise ValueError("a dataset render is already running; cancel it first")
    props = context.scene.avatex_dataset
    if not props.output_dir:
        raise ValueError("choose an output folder")
    out = Path(bpy.path.abspath(props.output_dir))
    temp_dir = None
    if props.source == "FILES":
        raw = [p.strip() for p in props.files.split(";") if p.strip()]
        subjects = [bpy.path.abspath(p) for p in raw]
        missing = [p for p in subjects if not os.path.exists(p)]
        if not subjects or missing:
            raise ValueError(f"subject files not found: {'; '.join(missing) or '(none given)'}")
    else:
        temp_dir = Path(tempfile.mkdtemp(prefix="avatex_subjects_"))
        try:
            subjects = [str(p) for p in _subject_blends(props, context, temp_dir)]
        except Exception:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
    logs = out / "logs"
    progress_path, log_path = logs / "addon-progress.jsonl", logs / "addon-render.log"
    job = RenderJob(worker_command(build_args(props, subjects, out, progress_path, log_path)), out,
                    progress_path, log_path, temp_dir=temp_dir)
    job.start()
    _JOB = job
    props.is_running = True
    props.progress = 0.0
    props.status = "starting Blender..."
    return job


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def poll_render_job() -> float | None:
    """Timer callback: read new progress, update the panel; returns None once the job has ended."""
    job = _JOB
    scene = bpy.context.scene
    props = getattr(scene, "avatex_dataset", None)
    if job is None or props is None:
        return None
    for event in job.read_events():
        job.apply(event)
    props.progress = job.fraction
    exited = job.proc is not None and job.proc.poll() is not None
    if exited:
        for event in job.read_events():  # lines written just before exit
            job.apply(event)
    if not exited:
        props.status = (f"{job.done_images}/{job.total} images" + (f" - {job.subject}" if job.subject else "")
                        if job.total else "preparing...")
        _redraw()
        return POLL_SECONDS
    props.is_running = False
    props.progress = job.fraction
    if job.cancelled:
        props.status = f"cancelled after {job.done_images} images (render again to resume)"
    elif job.summary is not None:
        s = job.summary
        failed = len(s.get("failed", [])) + int(s.get("input_errors", 0))
        props.status = (f"done: {s['rendered_images']} images, {s['skipped_views']} views skipped, "
                        f"{failed} failed")
        if job.repaired:
            props.status += f", {len(job.repaired)} mesh(es) repaired (subject.json: hygiene)"
    else:
        props.status = f"render stopped (exit code {job.proc.returncode}); see {job.log_path}"
    if job.errors:
        props.status += f" | {job.errors[-1]}"
    job.cleanup()
    _redraw()
    return None


class AvatexDatasetSettings(bpy.types.PropertyGroup):
    source: EnumProperty(name="Subjects", items=(
        ("FILES", "Files", "Mesh files or folders (separate several with ';')"),
        ("SELECTED", "Selected", "The selected mesh objects, as one subject"),
        ("COLLECTION", "Collection", "A collection (each child collection is a subject)")), default="FILES")
    files: StringProperty(name="Files", subtype="FILE_PATH",
                          description="Subject files or folders (.ply .obj .glb .gltf .fbx), ';'-separated")
    collection: PointerProperty(name="Collection", type=bpy.types.Collection)
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", description="Dataset folder")
    level_wild: BoolProperty(name="Wild", default=True)
    level_intermediate: BoolProperty(name="Intermediate", default=True)
    level_clear: BoolProperty(name="Clear", default=True)
    level_hdri: BoolProperty(name="HDRI", default=False)
    extra_levels: StringProperty(name="More levels",
                                 description="Comma-separated levels from the light config")
    light_config: StringProperty(name="Light config", subtype="FILE_PATH",
                                 description="TOML/JSON file defining more lighting levels")
    views: IntProperty(name="Views", default=45, min=1, max=3600)
    step: FloatProperty(name="Step", default=8.0, min=0.1, max=360.0, description="Yaw step in degrees")
    resolution: IntProperty(name="Resolution", default=512, min=8, max=8192)
    samples: IntProperty(name="Samples", default=16, min=1, max=4096)
    seed: IntProperty(name="Seed", default=0, min=0)
    engine: EnumProperty(name="Engine", items=(("CYCLES", "Cycles", ""), ("EEVEE", "EEVEE", "Needs a GPU")),
                         default="CYCLES")
    up: EnumProperty(name="Up axis", items=(("AUTO", "Auto", ""), ("Y", "Y", ""), ("Z", "Z", "")),
                     default="AUTO")
    is_running: BoolProperty(default=False)
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    status: StringProperty(default="")


class AVATEX_OT_render_dataset(bpy.types.Operator):
    """Render a relit dataset in a background Blender (the UI stays responsive)"""

    bl_idname = "avatex.render_dataset"
    bl_label = "Render Dataset"

    def execute(self, context):
        try:
            start_render(context)
        except (ValueError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not bpy.app.timers.is_registered(poll_render_job):
            bpy.app.timers.register(poll_render_job, first_interval=POLL_SECONDS)
        return {"FINISHED"}


class AVATEX_OT_cancel_dataset(bpy.types.Operator):
    """Stop the running dataset render (finished views are kept; rendering again resumes)"""

    bl_idname = "avatex.cancel_dataset"
    bl_label = "Cancel"

    def execute(self, context):
        if _JOB is None or _JOB.proc is None or _JOB.proc.poll() is not None:
            self.report({"WARNING"}, "no dataset render is running")
            return {"CANCELLED"}
        _JOB.cancel()
        return {"FINISHED"}


class AVATEX_PT_dataset(bpy.types.Panel):
    bl_label = "Dataset"
    bl_idname = "AVATEX_PT_dataset"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "avatex"

    def draw(self, context):
        props = context.scene.avatex_dataset
        layout = self.layout
        col = layout.column()
        col.prop(props, "source", expand=True)
        if props.source == "FILES":
            col.prop(props, "files")
        elif props.source == "COLLECTION":
            col.prop(props, "collection")
        col.prop(props, "output_dir")
        box = layout.box()
        box.label(text="Lighting levels")
        row = box.row(align=True)
        for lv in BUILTIN_LEVELS:
            row.prop(props, f"level_{lv}", toggle=True)
        box.prop(props, "light_config")
        box.prop(props, "extra_levels")
        grid = layout.grid_flow(columns=2, align=True)
        for name in ("views", "step", "resolution", "samples", "seed", "engine", "up"):
            grid.prop(props, name)
        if props.is_running:
            layout.progress(factor=props.progress, type="BAR", text=props.status or "rendering...")
            layout.operator(AVATEX_OT_cancel_dataset.bl_idname, icon="CANCEL")
        else:
            layout.operator(AVATEX_OT_render_dataset.bl_idname, icon="RENDER_STILL")
            if props.status:
                layout.label(text=props.status)


_CLASSES = (AvatexDatasetSettings, AVATEX_OT_render_dataset, AVATEX_OT_cancel_dataset, AVATEX_PT_dataset)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.avatex_dataset = PointerProperty(type=AvatexDatasetSettings)


def unregister() -> None:
    if _JOB is not None:
        _JOB.cancel()
        _JOB.cleanup()
    if bpy.app.timers.is_registered(poll_render_job):
        bpy.app.timers.unregister(poll_render_job)
    del bpy.types.Scene.avatex_dataset
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
