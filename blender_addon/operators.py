"""Operators: each gathers its inputs from the scene, sends one request and returns at once.

The backend's reply is handled later by the timer (:mod:`.runtime`), so no operator ever waits on the
network; progress and a Cancel button appear in the panel that started the job. The classes look
alike by Blender's registration shape (``bl_idname``, ``bl_label``, ``bl_description``, ``execute``);
what they share beyond it is in :func:`_fail`, :func:`_submit` and :class:`_OneAtATime`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import bpy
import numpy as np
from bpy.props import EnumProperty

from . import audit, cameras, images, mesh_import, tasks
from .local_backend import LaunchError
from .runtime import RUNTIME
from .settings import settings

GT_SOURCE_PROPERTY = "avatex_source"
"""Custom property holding the file a mesh object was loaded from (used by the Audit's GT "Auto")."""


def _fail(op: bpy.types.Operator, message: str) -> set[str]:
    op.report({"ERROR"}, message)
    return {"CANCELLED"}


class _OneAtATime:
    """Mixin of the operators that start a job: available while no task of their ``kind`` runs."""

    kind = ""

    @classmethod
    def poll(cls, context):
        running = RUNTIME.latest(cls.kind)
        return running is None or not running.active


def _submit(op: bpy.types.Operator, task: tasks.Task, name: str, args: dict,
            arrays: dict | None = None) -> set[str]:
    """Send the request; a failure to send (not connected, bad keys, send queue full) is one line."""
    try:
        RUNTIME.submit(task, name, args, arrays)
    except Exception as exc:
        return _fail(op, f"could not send the request: {exc}")
    return {"FINISHED"}


def _abspath(path: str) -> str:
    return os.path.normpath(bpy.path.abspath(path)) if path else ""


class AVATEX_OT_connect(bpy.types.Operator):
    bl_idname = "avatex.connect"
    bl_label = "Connect"
    bl_description = "Connect (again) to the backend at the address in the preferences"

    def execute(self, context):
        try:
            RUNTIME.connect(settings(context), force=True)
        except (ConnectionError, OSError, ValueError) as exc:
            return _fail(self, str(exc))
        return {"FINISHED"}


class AVATEX_OT_backend_start(bpy.types.Operator):
    bl_idname = "avatex.backend_start"
    bl_label = "Start local backend"
    bl_description = "Run `avatex serve` with the backend Python from the preferences, then connect to it"

    def execute(self, context):
        prefs = settings(context)
        roots = [_abspath(r) for r in prefs.roots.split(os.pathsep) if r.strip()]
        try:
            RUNTIME.local.start(_abspath(prefs.python), prefs.address, roots, _log_dir(),
                                      extra=prefs.extra_args)
            RUNTIME.connect(prefs, force=True)
        except (LaunchError, ConnectionError) as exc:
            return _fail(self, str(exc))
        self.report({"INFO"}, f"local backend started; log: {RUNTIME.local.log_path}")
        return {"FINISHED"}


class AVATEX_OT_backend_stop(bpy.types.Operator):
    bl_idname = "avatex.backend_stop"
    bl_label = "Stop local backend"
    bl_description = "Stop the backend this Blender session started"

    def execute(self, context):
        RUNTIME.local.stop()
        return {"FINISHED"}


def _log_dir() -> Path:
    try:
        return Path(bpy.utils.extension_path_user(__package__, create=True))
    except (ValueError, AttributeError, RuntimeError):  # not installed as an extension (source checkout)
        return Path(tempfile.gettempdir()) / "avatex"


class AVATEX_OT_cancel(bpy.types.Operator):
    bl_idname = "avatex.cancel"
    bl_label = "Cancel"
    bl_description = "Cancel this job (on the backend, or while its result is being imported)"

    kind: EnumProperty(items=[("reconstruct", "Reconstruct", ""), ("audit", "Audit", ""),
                              ("train", "Train", "")])

    def execute(self, context):
        task = RUNTIME.latest(self.kind)
        if task is None or not task.active:
            return {"CANCELLED"}
        RUNTIME.cancel(task)
        return {"FINISHED"}


# ------------------------------------------------------------------------------------- reconstruct
class AVATEX_OT_reconstruct(_OneAtATime, bpy.types.Operator):
    bl_idname = "avatex.reconstruct"
    bl_label = "Reconstruct"
    bl_description = ("Reconstruct a coloured 3D person from the image on the backend; the mesh appears at "
                      "the 3D cursor, named after the image")
    kind = "reconstruct"

    def execute(self, context):
        s = context.scene.avatex
        if s.image_source == "CAMERAS":
            return self._from_cameras(context)
        try:
            if s.image_source == "DATABLOCK":
                if s.image is None:
                    return _fail(self, "choose a Blender image (or switch to an image file)")
                rgba, name = images.image_rgba(s.image), images.stem(s.image)
            else:
                if not s.image_path:
                    return _fail(self, "choose an image file")
                rgba, name = images.read_file(s.image_path)
            arrays = {"image": rgba}
            if s.use_mask:
                if s.image_source == "DATABLOCK" and s.mask_image is not None:
                    arrays["mask"] = images.mask_from(images.image_rgba(s.mask_image))
                elif s.image_source == "FILE" and s.mask_path:
                    arrays["mask"] = images.mask_from(images.read_file(s.mask_path)[0])
                else:
                    return _fail(self, "choose a mask (or untick Separate mask to use the image's alpha)")
                if arrays["mask"].shape != rgba.shape[:2]:
                    return _fail(self, f"the mask is {arrays['mask'].shape[1]}×{arrays['mask'].shape[0]} "
                                       f"but the image is {rgba.shape[1]}×{rgba.shape[0]}")
            # An image without alpha (a photo) goes as it is: the backend masks the person and sends the
            # mask back, which lands as an image datablock next to the mesh (tasks.ReconstructTask).
        except images.ImageError as exc:
            return _fail(self, str(exc))
        args = {"resolution": s.resolution, "checkpoint": _abspath(s.checkpoint) or None}
        if s.recon_model == "pifu_official":
            args.update(checkpoint=None, weights="pifu")
        if s.recon_model == "pifuhd":
            args.update(model="pifuhd", color_checkpoint=_abspath(s.color_checkpoint) or None)
            if s.texture != "NONE":
                return _fail(self, "PIFuHD gives vertex colours only: set Texture to Vertex colours")
        elif s.texture != "NONE":
            args.update(texture=int(s.texture), faces=s.texture_faces, texture_detail=s.texture_detail,
                        **({"texture_smooth": 0.0} if s.texture_smooth == "NONE" else {}))
        meta = {"avatex_kind": "reconstruction", "avatex_image": name,
                "avatex_checkpoint": args["checkpoint"] or ""}
        task = tasks.ReconstructTask(name, tuple(context.scene.cursor.location), meta)
        sent = _submit(self, task, "reconstruct", args, arrays)
        if sent == {"FINISHED"}:
            self.report({"INFO"}, f"reconstructing {name} on the backend…")
        return sent

    def _from_cameras(self, context) -> set[str]:
        """PIFu's multi-view mode: one view per selected orthographic camera, with its calibration."""
        s = context.scene.avatex
        if s.texture != "NONE":
            return _fail(self, "a textured result bakes from one image: set Texture to None for cameras")
        try:
            views, calibs, unit = cameras.camera_views(context)
        except (cameras.CameraError, images.ImageError) as exc:
            return _fail(self, str(exc))
        if s.recon_model == "pifuhd":
            return _fail(self, "several cameras are PIFu's multi-view mode: set Model to PIFu for cameras")
        name = "cameras"
        args = {"resolution": s.resolution, "checkpoint": _abspath(s.checkpoint) or None}
        if s.recon_model == "pifu_official":
            args.update(checkpoint=None, weights="pifu")
        meta = {"avatex_kind": "reconstruction", "avatex_image": name, "avatex_views": len(views),
                "avatex_checkpoint": args["checkpoint"] or ""}
        task = tasks.ReconstructTask(name, tuple(context.scene.cursor.location), meta, scale=unit)
        sent = _submit(self, task, "reconstruct", args, {"views": views, "calibs": calibs})
        if sent == {"FINISHED"}:
            self.report({"INFO"}, f"reconstructing from {len(views)} cameras on the backend…")
        return sent


# ------------------------------------------------------------------------------------------- audit
def gt_file_of(obj: bpy.types.Object, scene_settings) -> str | None:
    """The GT's file for the backend, by the panel's GT setting (None: send the object itself)."""
    if scene_settings.gt_source == "OBJECT":
        return None
    path = _abspath(scene_settings.gt_path) or str(obj.get(GT_SOURCE_PROPERTY, "") or "")
    if scene_settings.gt_source == "FILE" and not path:
        raise ValueError("GT colours from a file: set the GT file")
    return path or None


def object_arrays(obj: bpy.types.Object, space: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (N, 3) float32 in object or world space, triangles (F, 3) int32)."""
    verts = mesh_import.read_positions(obj.data)
    if space == "WORLD":
        m = np.asarray(obj.matrix_world, dtype=np.float64)
        verts = (verts.astype(np.float64) @ m[:3, :3].T + m[:3, 3]).astype(np.float32)
    return np.ascontiguousarray(verts), mesh_import.read_triangles(obj.data)


def object_colors(obj: bpy.types.Object) -> np.ndarray | None:
    """Per-vertex sRGB colours of a mesh object: its render colour attribute (never the heatmap), else
    the first other colour attribute, else its image texture sampled at the vertices."""
    mesh = obj.data
    names = [mesh.color_attributes.default_color_name, mesh.color_attributes.active_color_name,
             *(a.name for a in mesh.color_attributes)]
    for name in names:
        if name and name != audit.HEATMAP_ATTRIBUTE and name in mesh.color_attributes:
            return mesh_import.read_point_colors(mesh, name)
    return mesh_import.read_texture_colors(obj)


def audit_request(pred: bpy.types.Object, gt: bpy.types.Object | None, scene_settings
                  ) -> tuple[dict, dict]:
    """The ``evaluate`` request for auditing ``pred`` against ``gt`` (arguments, arrays)."""
    if pred.type != "MESH" or len(pred.data.vertices) == 0:
        raise ValueError(f"{pred.name!r} is not a mesh with vertices")
    colors = object_colors(pred)
    if colors is None:
        raise ValueError(f"{pred.name!r} has no colour attribute to audit")
    verts, _ = object_arrays(pred, scene_settings.space)
    arrays: dict[str, np.ndarray] = {"vertices": verts, "colors": colors}
    args: dict = {"k": scene_settings.k}
    gt_path = gt_file_of(gt, scene_settings) if gt is not None else (_abspath(scene_settings.gt_path) or None)
    if gt_path:
        args["gt"] = gt_path
    else:
        if gt is None:
            raise ValueError("choose the ground-truth object (or a GT file)")
        if gt == pred:
            raise ValueError("the reconstruction and the ground truth are the same object")
        gt_colors = object_colors(gt)
        if gt_colors is None:
            raise ValueError(f"the ground truth {gt.name!r} has neither a colour attribute nor an image "
                             "texture; give its file instead (GT colours: File)")
        gt_verts, gt_faces = object_arrays(gt, scene_settings.space)
        arrays.update(gt_vertices=gt_verts, gt_faces=gt_faces, gt_colors=gt_colors)
    return args, arrays


class AVATEX_OT_audit(_OneAtATime, bpy.types.Operator):
    bl_idname = "avatex.audit"
    bl_label = "Audit texture"
    bl_description = ("Compute per-vertex PATD / PIPATD (CIEDE2000 against the ground truth) on the backend; "
                      "results land as attributes and a heatmap")
    kind = "audit"

    def execute(self, context):
        s = context.scene.avatex
        pred = s.audit_object or context.active_object
        if pred is None:
            return _fail(self, "choose the reconstruction to audit")
        if pred.mode == "EDIT":
            pred.update_from_editmode()
        try:
            args, arrays = audit_request(pred, s.gt_object, s)
        except ValueError as exc:
            return _fail(self, str(exc))
        task = tasks.AuditTask(pred.name, len(pred.data.vertices), s.heatmap_metric)
        return _submit(self, task, "evaluate", args, arrays)


class AVATEX_OT_audit_view(bpy.types.Operator):
    bl_idname = "avatex.audit_view"
    bl_label = "Show"
    bl_description = "Switch the audited mesh between its heatmap and its own colours"

    show: EnumProperty(items=[("HEATMAP", "Heatmap", "The error heatmap"),
                              ("COLORS", "Colours", "The mesh's own colours")])

    def execute(self, context):
        s = context.scene.avatex
        obj = s.audit_object or context.active_object
        if obj is None or obj.type != "MESH":
            return {"CANCELLED"}
        try:
            if self.show == "HEATMAP":
                audit.show_heatmap(obj, s.heatmap_metric)
            else:
                audit.show_colors(obj)
        except ValueError as exc:
            return _fail(self, str(exc))
        return {"FINISHED"}


class AVATEX_OT_selection_error(bpy.types.Operator):
    bl_idname = "avatex.selection_error"
    bl_label = "Selection error"
    bl_description = "Mean PATD / PIPATD of the selected vertices"

    def execute(self, context):
        obj = context.active_object
        stats = audit.selection_stats(obj)
        if stats is None:
            return _fail(self, "the active object has no audit attributes")
        RUNTIME.selection = dict(stats, object=obj.name)
        return {"FINISHED"}


# ------------------------------------------------------------------------------------------- train
class AVATEX_OT_train_start(_OneAtATime, bpy.types.Operator):
    bl_idname = "avatex.train_start"
    bl_label = "Start training"
    bl_description = "Start a training run on the backend (paths as the backend sees them)"
    kind = "train"

    def execute(self, context):
        s = context.scene.avatex
        if not s.dataset or not s.run_dir:
            return _fail(self, "set the dataset folder and the run folder")
        config = {"data": _abspath(s.dataset), "out": _abspath(s.run_dir), "loss": s.loss,
                  "steps": s.steps, "model": s.model, "progress_bar": False}
        if s.init_checkpoint:
            config["init"] = _abspath(s.init_checkpoint)
        task = tasks.TrainTask(Path(config["out"]).name or "run", s.steps)
        return _submit(self, task, "train.start", {"config": config})


class AVATEX_OT_show_image(bpy.types.Operator):
    bl_idname = "avatex.show_loss_curve"
    bl_label = "Open loss curve"
    bl_description = "Show the loss-curve image in an Image Editor window"

    def execute(self, context):
        img = bpy.data.images.get(tasks.LOSS_IMAGE)
        if img is None:
            return _fail(self, "no loss curve yet")
        bpy.ops.wm.window_new()
        window = context.window_manager.windows[-1]
        area = window.screen.areas[0]
        area.type = "IMAGE_EDITOR"
        area.spaces.active.image = img
        return {"FINISHED"}


CLASSES = (
    AVATEX_OT_connect,
    AVATEX_OT_backend_start,
    AVATEX_OT_backend_stop,
    AVATEX_OT_cancel,
    AVATEX_OT_reconstruct,
    AVATEX_OT_audit,
    AVATEX_OT_audit_view,
    AVATEX_OT_selection_error,
    AVATEX_OT_train_start,
    AVATEX_OT_show_image,
)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
