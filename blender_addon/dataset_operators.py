"""Dataset operators: start and cancel the background render; the work is in :mod:`.dataset_job`."""

from __future__ import annotations

import bpy

from .runtime import RUNTIME


class AVATEX_OT_render_dataset(bpy.types.Operator):
    """Render a relit dataset in a background Blender (the UI stays responsive)"""

    bl_idname = "avatex.render_dataset"
    bl_label = "Render Dataset"

    def execute(self, context):
        try:
            RUNTIME.dataset.start(context)
        except (ValueError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class AVATEX_OT_cancel_dataset(bpy.types.Operator):
    """Stop the running dataset render (finished views are kept; rendering again resumes)"""

    bl_idname = "avatex.cancel_dataset"
    bl_label = "Cancel"

    def execute(self, context):
        if not RUNTIME.dataset.cancel():
            self.report({"WARNING"}, "no dataset render is running")
            return {"CANCELLED"}
        return {"FINISHED"}


CLASSES = (AVATEX_OT_render_dataset, AVATEX_OT_cancel_dataset)
register, unregister = bpy.utils.register_classes_factory(CLASSES)
