"""Blender (bpy wheel): import an OBJ and export it as an FBX with its texture embedded.

Run in its own process because it resets Blender's scene: ``python scenario_fbx_export.py SRC.obj OUT.fbx``.
"""

import sys

import bpy


def main(src: str, out: str) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.obj_import(filepath=src)
    bpy.ops.export_scene.fbx(filepath=out, path_mode="COPY", embed_textures=True)


if __name__ == "__main__":
    main(sys.argv[-2], sys.argv[-1])
