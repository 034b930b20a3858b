"""The Dataset panel's settings, stored per scene as ``scene.avatex_dataset`` (saved with the .blend).

Settings only: the running render's progress is runtime state (:mod:`.dataset_job`); ``is_running``,
``progress`` and ``status`` are the copy of it that the panel draws.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from avatex_core.lighting import PAPER_LEVELS
from avatex_core.render_options import BUILTIN_LEVEL_NAMES


def level_property(level: str) -> str:
    """The toggle of a built-in lighting level (``level_wild``, ...)."""
    return f"level_{level}"


class AvatexDatasetSettings(bpy.types.PropertyGroup):
    source: EnumProperty(name="Subjects", items=(
        ("FILES", "Files", "Mesh files or folders (separate several with ';')"),
        ("SELECTED", "Selected", "The selected mesh objects, as one subject"),
        ("COLLECTION", "Collection", "A collection (each child collection is a subject)")), default="FILES")
    files: StringProperty(name="Files", subtype="FILE_PATH",
                          description="Subject files or folders (.ply .obj .glb .gltf .fbx), ';'-separated")
    collection: PointerProperty(name="Collection", type=bpy.types.Collection)
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", description="Dataset folder")
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


# One toggle per built-in level, on for the paper's levels (the renderer's default).
for _level in BUILTIN_LEVEL_NAMES:
    AvatexDatasetSettings.__annotations__[level_property(_level)] = BoolProperty(
        name=_level.upper() if _level == "hdri" else _level.capitalize(), default=_level in PAPER_LEVELS)


def chosen_levels(props) -> list[str]:
    """The levels the settings ask for: the toggled built-in ones, then the extra names."""
    levels = [lv for lv in BUILTIN_LEVEL_NAMES if getattr(props, level_property(lv))]
    return levels + [lv.strip() for lv in props.extra_levels.split(",") if lv.strip()]


def register() -> None:
    bpy.utils.register_class(AvatexDatasetSettings)
    bpy.types.Scene.avatex_dataset = PointerProperty(type=AvatexDatasetSettings)


def unregister() -> None:
    del bpy.types.Scene.avatex_dataset
    bpy.utils.unregister_class(AvatexDatasetSettings)
