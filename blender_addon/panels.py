"""The sidebar panels (3D viewport > N > avatex): Train, Reconstruct and Audit.

The Dataset panel is the renderer's (:mod:`.dataset_panel`). Drawing only reads state - settings from
``scene.avatex``, job progress from :data:`.runtime.RUNTIME` - and never computes anything heavy:
draw callbacks run on every redraw. The panels look alike by Blender's shape (``bl_*``, then ``draw``
opening with the connection line); the job part they share is :func:`draw_task`.
"""

from __future__ import annotations

import math
import time

import bpy

from avatex_core import heatmap
from avatex_core.progress import format_duration

from . import audit, tasks
from .preferences import draw_status
from .runtime import RUNTIME

CATEGORY = "avatex"


def _fmt(value, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and math.isfinite(value) else "–"


def draw_connection(layout) -> None:
    row = layout.row(align=True)
    draw_status(row)
    if RUNTIME.client is None or RUNTIME.connection_state in ("lost", "reconnecting"):
        row.operator("avatex.connect", text="", icon="FILE_REFRESH")
    if RUNTIME.notice:
        layout.label(text=RUNTIME.notice, icon="INFO")


def draw_task(layout, kind: str, cancel_text: str = "Cancel", start: str | None = None,
              icon: str = "PLAY") -> tasks.Task | None:
    """Progress bar + cancel while a job runs; its outcome once it ended. ``start``, ``icon``: the
    operator (and its icon) that starts a job of this kind, drawn first while none runs."""
    task = RUNTIME.latest(kind)
    if start is not None and (task is None or not task.active):
        layout.operator(start, icon=icon)
    if task is None:
        return None
    if task.active:
        row = layout.row(align=True)
        fraction = task.fraction if task.fraction is not None else 0.0
        text = f"{task.stage} {round(100 * fraction)}%" if task.fraction is not None else task.stage
        if hasattr(row, "progress"):
            row.progress(factor=fraction, type="BAR", text=text)
        else:  # pragma: no cover - UILayout.progress exists from Blender 4.0
            row.label(text=text)
        row.operator("avatex.cancel", text="", icon="CANCEL").kind = kind
        if cancel_text != "Cancel":
            layout.operator("avatex.cancel", text=cancel_text, icon="CANCEL").kind = kind
    elif task.state == tasks.FAILED:
        _wrapped(layout.box(), task.message, "ERROR")
    elif task.state == tasks.CANCELLED:
        layout.label(text=task.message, icon="CANCEL")
    else:
        layout.label(text=task.message, icon="CHECKMARK")
    return task


def _wrapped(layout, text: str, icon: str, width: int = 48) -> None:
    words, line, first = text.split(), "", True
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            layout.label(text=line, icon=icon if first else "BLANK1")
            line, first = word, False
        else:
            line = f"{line} {word}".strip()
    if line:
        layout.label(text=line, icon=icon if first else "BLANK1")


class _Panel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


class AVATEX_PT_train(_Panel, bpy.types.Panel):
    bl_label = "Train"
    bl_idname = "AVATEX_PT_train"
    bl_order = 1
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = context.scene.avatex
        draw_connection(layout)
        col = layout.column()
        col.prop(s, "dataset")
        col.prop(s, "run_dir")
        col.prop(s, "loss")
        col.prop(s, "steps")
        col.prop(s, "model")
        col.prop(s, "init_checkpoint")
        task = draw_task(layout, "train", cancel_text="Stop training", start="avatex.train_start",
                         icon="PLAY")
        if isinstance(task, tasks.TrainTask) and (task.step_now is not None or task.losses):
            grid = layout.grid_flow(columns=2, align=True)
            grid.label(text=f"Step {task.step_now or 0:,} / {task.total_steps:,}")
            grid.label(text=f"Loss {_fmt(task.loss_now, 4)}")
            grid.label(text=f"ETA {format_duration(task.eta_s, '–')}" if task.active else "")
            elapsed = (task.finished or time.monotonic()) - task.started
            grid.label(text=f"Elapsed {format_duration(elapsed, '–')}")
        img = bpy.data.images.get(tasks.LOSS_IMAGE)
        if img is not None:
            preview = img.preview_ensure() if hasattr(img, "preview_ensure") else None
            preview = img.preview if preview is None else preview
            if preview is not None:
                layout.template_icon(icon_value=preview.icon_id, scale=8.0)
            layout.operator("avatex.show_loss_curve", icon="IMAGE_DATA")


class AVATEX_PT_reconstruct(_Panel, bpy.types.Panel):
    bl_label = "Reconstruct"
    bl_idname = "AVATEX_PT_reconstruct"
    bl_order = 2

    def draw(self, context):
        layout = self.layout
        s = context.scene.avatex
        draw_connection(layout)
        layout.row().prop(s, "image_source", expand=True)
        col = layout.column()
        if s.image_source == "CAMERAS":
            n = sum(1 for o in context.selected_objects if o.type == "CAMERA")
            col.label(text=f"{n} camera(s) selected; 3D cursor = the person's centre", icon="CAMERA_DATA")
        elif s.image_source == "DATABLOCK":
            col.template_ID(s, "image", open="image.open")
        else:
            col.prop(s, "image_path")
        if s.image_source != "CAMERAS":
            col.prop(s, "use_mask")
        if s.image_source != "CAMERAS" and s.use_mask:
            if s.image_source == "DATABLOCK":
                col.template_ID(s, "mask_image", open="image.open")
            else:
                col.prop(s, "mask_path")
        col.prop(s, "recon_model")
        if s.recon_model != "pifu_official":
            col.prop(s, "checkpoint")
        if s.recon_model == "pifuhd":
            col.prop(s, "color_checkpoint")
        col.prop(s, "resolution")
        col.prop(s, "texture")
        if s.texture != "NONE":
            col.prop(s, "texture_faces")
            col.prop(s, "texture_detail")
            col.prop(s, "texture_smooth")
        draw_task(layout, "reconstruct", start="avatex.reconstruct", icon="OUTLINER_OB_ARMATURE")


class AVATEX_PT_audit(_Panel, bpy.types.Panel):
    bl_label = "Audit"
    bl_idname = "AVATEX_PT_audit"
    bl_order = 3

    def draw(self, context):
        layout = self.layout
        s = context.scene.avatex
        draw_connection(layout)
        col = layout.column()
        col.prop(s, "audit_object")
        col.prop(s, "gt_object")
        col.prop(s, "gt_source")
        if s.gt_source != "OBJECT":
            col.prop(s, "gt_path")
        row = col.row(align=True)
        row.prop(s, "k")
        row.prop(s, "space", text="")
        draw_task(layout, "audit", start="avatex.audit", icon="VIEWZOOM")

        obj = s.audit_object or context.active_object
        summary = audit.summary_of(obj)
        if summary is None:
            return
        box = layout.box()
        row = box.row(align=True)
        row.prop(s, "heatmap_metric", expand=True)
        row = box.row(align=True)
        row.operator("avatex.audit_view", text="Heatmap", icon="COLORSET_01_VEC").show = "HEATMAP"
        row.operator("avatex.audit_view", text="Colours", icon="SHADING_TEXTURE").show = "COLORS"
        draw_legend(box, context)
        grid = box.grid_flow(row_major=True, columns=4, align=True)
        for label in ("ΔE00", "mean", "median", "p90"):
            grid.label(text=label)
        for metric in audit.METRICS:
            stats = summary.get(metric) or {}
            grid.label(text=metric.upper())
            for key in ("mean", "median", "p90"):
                grid.label(text=_fmt(stats.get(key)))
        extra = [f"k = {summary['k']}" if "k" in summary else ""]
        if "gt_points" in summary:
            against = tasks.FLAVOUR_LABELS.get(summary.get("flavour"),
                                               f"GT {summary.get('gt_kind', 'points')}")
            extra.append(f"against {summary['gt_points']:,} {against}")
        box.label(text="   ".join(e for e in extra if e))
        sel = RUNTIME.selection
        if obj is not None and obj.mode == "EDIT":
            sub = box.box()
            if sel and sel.get("object") == obj.name:
                if sel.get("selected"):
                    sub.label(text=f"Selected {sel['selected']:,} vertices", icon="VERTEXSEL")
                    sub.label(text=f"PATD {_fmt(sel.get('patd'))}   PIPATD {_fmt(sel.get('pipatd'))}")
                else:
                    sub.label(text="Select vertices to see their mean error", icon="VERTEXSEL")
            sub.operator("avatex.selection_error", text="Refresh selection", icon="FILE_REFRESH")


def draw_legend(layout, context) -> None:
    """The fixed ΔE00 scale: a colour swatch per tick with its value (docs/addon.md)."""
    wm = context.window_manager
    col = layout.column(align=True)
    swatches = col.row(align=True)
    labels = col.row(align=True)
    for i, (label, _) in enumerate(heatmap.legend()):
        swatches.prop(wm, f"avatex_legend_{i}", text="")
        labels.label(text=label)
    col.label(text=f"ΔE00, fixed scale 0–{heatmap.SCALE_MAX:g} (viridis)")


CLASSES = (AVATEX_PT_train, AVATEX_PT_reconstruct, AVATEX_PT_audit)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
