"""The Dataset panel (3D viewport > sidebar > avatex): what to render, and the running render's progress.

Drawing only reads ``scene.avatex_dataset`` (:mod:`.dataset_properties`); the buttons are the operators
of :mod:`.dataset_operators`.
"""

from __future__ import annotations

import bpy

from avatex_core.render_options import BUILTIN_LEVEL_NAMES

from .dataset_operators import AVATEX_OT_cancel_dataset, AVATEX_OT_render_dataset
from .dataset_properties import level_property


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
        for level in BUILTIN_LEVEL_NAMES:
            row.prop(props, level_property(level), toggle=True)
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


register, unregister = bpy.utils.register_classes_factory((AVATEX_PT_dataset,))
