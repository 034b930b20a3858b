"""Installed-extension scenario: registration, the UI API the panels need, and a clean disable/enable."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import bpy

if TYPE_CHECKING:
    from extension import Extension


def registers(ext: Extension) -> dict:
    import zmq

    import avatex_core.protocol

    pkg = ext.addon.__name__
    # The UI API the panels draw with (draw code cannot run headless; its calls must exist).
    layout_api = {f.identifier for f in bpy.types.UILayout.bl_rna.functions}
    missing_api = sorted({"progress", "template_icon", "template_ID", "grid_flow", "prop", "operator"}
                         - layout_api)
    if "preview_ensure" not in {f.identifier for f in bpy.types.Image.bl_rna.functions}:
        missing_api.append("Image.preview_ensure")
    panels = sorted(c.__name__ for c in bpy.types.Panel.__subclasses__()
                    if getattr(c, "bl_category", "") == "avatex")
    bpy.ops.preferences.addon_disable(module=pkg)
    disabled = not hasattr(bpy.types.Scene, "avatex")
    bpy.ops.preferences.addon_enable(module=pkg)
    addon_dir = os.path.dirname(ext.addon.__file__)
    return {"enabled": pkg in bpy.context.preferences.addons, "panels": panels,
            "address": bpy.context.preferences.addons[pkg].preferences.address,
            "zmq": zmq.__file__, "ext_site": ext.ext_site,
            "protocol": avatex_core.protocol.__file__, "addon_dir": addon_dir,
            "torch": any(m == "torch" or m.startswith("torch.") for m in sys.modules),
            "timer": bpy.app.timers.is_registered(ext.runtime.tick), "disabled_cleanly": disabled,
            "missing_api": missing_api, "reenabled": hasattr(bpy.types.Scene, "avatex"),
            "dataset_panel_file": os.path.exists(os.path.join(addon_dir, "dataset_panel.py"))}
