"""Unlit renders of coloured meshes from dataset cameras: the image-space half of ``avatex table``.

The evaluation compares a reconstruction with its GT in image space (docs/metrics.md, "Evaluating
models on a dataset"). The GT side is the dataset's albedo render; this module makes the prediction's
side *the same way*: the same orthographic camera (``canonical.camera_to_canonical`` through
:func:`.scene.camera_matrix`, ``ortho_scale(W)``), the same Cycles set-up (:func:`.scene.configure_render`:
Standard view transform, transparent film, no dithering, tabulated Sobol), the albedo render's sample
count and seed, and an Emission shader of strength 1 reading the vertex colours, which is what the
albedo render's material does with a subject's colours. A vertex-coloured GT rendered here therefore
reproduces the dataset's albedo image (tested).

One Blender process renders a whole batch (a JSON *job*): the scene is set up once and each mesh is
imported, rendered from its views and removed. Meshes come as ``.npz`` files (``vertices`` float32
(N, 3) canonical, ``faces`` int32 (F, 3), ``colors`` float32 (N, 3) sRGB in [0, 1]), so colours arrive
at full precision, not rounded to 8 bits as in a PLY. Job format::

    {"resolution": 256, "samples": 16, "device": "cpu", "threads": 0,
     "meshes": [{"mesh": "/x/a.npz",
                 "views": [{"yaw": 0.0, "pitch": 0.0, "seed": 123, "out": "/x/a_0.png"}]}]}

Images that already exist are skipped (a killed batch resumes); every PNG is written atomically.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from avatex_core import atomic, canonical
from avatex_core.progress import NULL, Progress
from avatex_core.render_settings import RenderSettings, View

from .. import mesh_import
from . import compat
from .scene import camera_matrix, configure_render, make_camera, render_region

MATERIAL = "avatex_unlit_vertex_colours"

Emit = Callable[[dict[str, Any]], None]


class JobError(ValueError):
    """The job file is malformed; the message names the field."""


def read_job(path: str | Path) -> dict[str, Any]:
    """Load and check a job file."""
    try:
        job = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot read the render job {path}: {exc}") from None
    if not isinstance(job, dict) or not isinstance(job.get("meshes"), list):
        raise JobError(f"{path}: a render job is an object with a 'meshes' list")
    if not isinstance(job.get("resolution"), int) or not 8 <= job["resolution"] <= 8192:
        raise JobError(f"{path}: 'resolution' must be an integer in 8..8192")
    for i, entry in enumerate(job["meshes"]):
        if not isinstance(entry, dict) or "mesh" not in entry or not isinstance(entry.get("views"), list):
            raise JobError(f"{path}: meshes[{i}] needs 'mesh' and a 'views' list")
        for j, view in enumerate(entry["views"]):
            if not isinstance(view, dict) or not {"yaw", "out"} <= set(view):
                raise JobError(f"{path}: meshes[{i}].views[{j}] needs 'yaw' and 'out'")
    return job


def unlit_material() -> bpy.types.Material:
    """Emission (strength 1) of the colour attribute: with view transform Standard the pixel is the
    attribute's sRGB colour (Blender hands the FLOAT_COLOR attribute to shaders scene-linear)."""
    mat = bpy.data.materials.get(MATERIAL)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(MATERIAL)
    nt = compat.node_tree(mat)
    nt.nodes.clear()
    attr = nt.nodes.new("ShaderNodeAttribute")
    attr.attribute_type = "GEOMETRY"
    attr.attribute_name = mesh_import.COLOR_ATTRIBUTE
    emission = nt.nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.0
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(attr.outputs["Color"], emission.inputs["Color"])
    nt.links.new(emission.outputs[0], out.inputs["Surface"])
    return mat


def load_npz_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("vertices", "faces", "colors") if k not in data]
        if missing:
            raise JobError(f"{path} lacks array(s) {missing}")
        vertices = np.ascontiguousarray(data["vertices"], dtype=np.float32)
        faces = np.ascontiguousarray(data["faces"], dtype=np.int32)
        colors = np.clip(np.asarray(data["colors"], dtype=np.float32), 0.0, 1.0)
    if colors.shape != vertices.shape:
        raise JobError(f"{path}: colors {colors.shape} do not match vertices {vertices.shape}")
    return vertices, faces, colors


class UnlitRenderer:
    """A scene with the dataset camera and Cycles set up once; meshes come and go."""

    def __init__(self, resolution: int, samples: int, device: str = "cpu", threads: int = 0) -> None:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        self.scene = bpy.context.scene
        self.settings = RenderSettings(resolution=resolution, samples=samples, albedo_samples=samples,
                                       denoise=False, device=device, threads=threads)
        self.info = configure_render(self.scene, self.settings)
        self.camera = make_camera(self.scene, self.settings)
        self.material = unlit_material()
        self.render_seconds = 0.0

    def add_mesh(self, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> bpy.types.Object:
        obj = mesh_import.import_mesh("avatex_prediction", vertices, faces, colors)
        obj.data.materials.append(self.material)
        obj.matrix_world = Matrix(canonical.BLENDER_FROM_CANONICAL.tolist())
        return obj

    @staticmethod
    def remove(obj: bpy.types.Object) -> None:
        mesh = obj.data
        bpy.data.objects.remove(obj, do_unlink=True)
        bpy.data.meshes.remove(mesh)

    def render(self, vertices: np.ndarray, view: View, seed: int, path: Path) -> float:
        """Render the current scene from ``view`` into ``path`` (PNG, atomically); returns seconds."""
        self.camera.matrix_world = Matrix(camera_matrix(view).tolist())
        r = self.scene.render
        w = h = self.settings.resolution
        x0, y0, x1, y1 = render_region(vertices, view, w) if len(vertices) else (0, 0, w, h)
        r.use_border = True
        r.use_crop_to_border = False
        r.border_min_x, r.border_max_x = x0 / w, x1 / w
        r.border_min_y, r.border_max_y = (h - y1) / h, (h - y0) / h
        self.scene.cycles.seed = int(seed)
        t0 = time.perf_counter()
        bpy.ops.render.render(write_still=False)
        dt = time.perf_counter() - t0
        self.render_seconds += dt
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path) as tmp:
            bpy.data.images["Render Result"].save_render(filepath=str(tmp), scene=self.scene)
        return dt


def run_job(job: dict[str, Any], emit: Emit, progress: Progress = NULL) -> dict[str, Any]:
    """Render every view of every mesh of ``job`` that is not on disk yet; returns counts and timings.

    Cancelling ``progress`` stops between images (:class:`avatex_core.progress.Cancelled`)."""
    t_start = time.perf_counter()
    todo = [(entry, [v for v in entry["views"] if not Path(v["out"]).is_file()]) for entry in job["meshes"]]
    total = sum(len(views) for _, views in todo)
    emit({"event": "plan", "meshes": len(job["meshes"]), "images": total,
          "skipped": sum(len(e["views"]) for e in job["meshes"]) - total})
    renderer = UnlitRenderer(int(job["resolution"]), int(job.get("samples", 16)),
                             str(job.get("device", "cpu")), int(job.get("threads", 0)))
    done = 0
    for entry, views in todo:
        if not views:
            continue
        vertices, faces, colors = load_npz_mesh(entry["mesh"])
        obj = renderer.add_mesh(vertices, faces, colors)
        try:
            for v in views:
                progress.check("render stopped")
                view = View(int(v.get("index", 0)), float(v["yaw"]), float(v.get("pitch", 0.0)))
                seconds = renderer.render(vertices, view, int(v.get("seed", 0)), Path(v["out"]))
                done += 1
                emit({"event": "image", "done": done, "images": total, "out": v["out"],
                      "seconds": round(seconds, 4)})
        finally:
            renderer.remove(obj)
    wall = time.perf_counter() - t_start
    result = {"event": "done", "images": done, "render_seconds": round(renderer.render_seconds, 4),
              "wall_seconds": round(wall, 4), "blender": compat.version_string(), **renderer.info}
    emit(result)
    return result
