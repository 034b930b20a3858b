"""Headless audit scene: a coloured mesh + its per-vertex PATD/PIPATD -> a .blend and two PNG images.

    .venv/bin/python render_scripts/audit_blend.py MESH ERRORS.npz --out DIR [--heatmap patd]
        [--engine workbench|cycles] [--size 768] [--yaw 0] [--up y|z] [--name NAME] [--no-render]

MESH is a PLY/OBJ with vertex colours (or a texture), ERRORS.npz holds float arrays ``patd`` and
``pipatd`` with one value per mesh vertex (what ``avatex evaluate`` writes). Writes, in DIR:

* ``NAME.blend`` - the mesh with its colour attribute ``Col``, float attributes ``patd``/``pipatd``,
  the heatmap colour attribute (active, for Solid mode) and the "avatex heatmap" material - exactly
  what the add-on's Audit panel produces;
* ``NAME_colors.png`` - the mesh in its own colours;
* ``NAME_heatmap.png`` - the same view coloured by the error on the fixed ΔE00 scale
  (docs/addon.md, avatex_core/heatmap.py).

The mesh is taken to be in avatex's canonical space (y up, facing +z) unless ``--up z``; the camera
is orthographic, looking at the front. Workbench (default) renders in about a second and shows the
colour attributes exactly (flat light, Standard view transform: a pixel is the attribute's sRGB value,
so the image can be set beside an albedo render and the heatmap read against its legend); Cycles is
slower and shades with a soft light. Also usable as a module: :func:`build_scene`,
:func:`render_views`, :func:`run`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `blender -b -P` and plain `python render_scripts/...` alike
    sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
from mathutils import Matrix  # noqa: E402

from avatex_core import (  # noqa: E402
    atomic,
    canonical,
    heatmap,  # noqa: E402
)
from blender_addon import audit, materials, mesh_import  # noqa: E402


def load_errors(path: str | os.PathLike, vertex_count: int) -> tuple[np.ndarray, np.ndarray]:
    """(patd, pipatd) float32 from an npz, checked against the mesh's vertex count."""
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in audit.METRICS if k not in data]
        if missing:
            raise ValueError(f"{path} lacks array(s) {missing}; it must hold per-vertex 'patd' and 'pipatd'")
        arrays = tuple(np.asarray(data[k], dtype=np.float32).reshape(-1) for k in audit.METRICS)
    for key, values in zip(audit.METRICS, arrays, strict=True):
        if len(values) != vertex_count:
            raise ValueError(f"{path}: {key} has {len(values)} values but the mesh has "
                             f"{vertex_count} vertices")
    return arrays


def build_scene(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None, patd: np.ndarray,
                pipatd: np.ndarray, *, name: str = "audit", show: str = "patd", up: str = "y",
                yaw_deg: float = 0.0) -> bpy.types.Object:
    """A fresh scene holding the audited mesh, upright in Blender (z up, front toward -Y)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = mesh_import.import_mesh(name, vertices, faces, colors)
    if colors is not None:
        materials.assign_single_material(
            obj, materials.attribute_material(materials.COLORS_MATERIAL, mesh_import.COLOR_ATTRIBUTE))
    from_canonical = canonical.BLENDER_FROM_CANONICAL if up == "y" else np.eye(4)
    obj.matrix_world = Matrix.Rotation(math.radians(yaw_deg), 4, "Z") @ Matrix(from_canonical.tolist())
    summary = {"patd": heatmap.summarize(patd), "pipatd": heatmap.summarize(pipatd)}
    audit.apply(obj, patd, pipatd, summary, show=show)
    return obj


def _camera_for(obj: bpy.types.Object, size: int) -> None:
    scene = bpy.context.scene
    corners = _world_bbox(obj)
    lo, hi = corners.min(0), corners.max(0)
    center = (lo + hi) / 2
    cam_data = bpy.data.cameras.new("camera")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = float(max(hi[0] - lo[0], hi[2] - lo[2]) * 1.08)
    cam = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(cam)
    distance = float(hi[1] - lo[1]) + 10.0
    cam.location = (float(center[0]), float(lo[1]) - distance, float(center[2]))
    cam.rotation_euler = (math.radians(90.0), 0.0, 0.0)  # look along +Y: Blender's front view
    cam_data.clip_end = 2 * distance + 10.0
    scene.camera = cam
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100


def _world_bbox(obj: bpy.types.Object) -> np.ndarray:
    m = np.array(obj.matrix_world)
    box = np.array([list(c) for c in obj.bound_box])
    return box @ m[:3, :3].T + m[:3, 3]


def render_views(obj: bpy.types.Object, out_dir: Path, name: str, *, engine: str = "workbench",
                 size: int = 768, samples: int = 32) -> dict[str, Path]:
    """Render the coloured mesh and its heatmap to PNGs; returns {"colors": path, "heatmap": path}."""
    scene = bpy.context.scene
    _camera_for(obj, size)
    scene.view_settings.view_transform = "Standard"
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    if engine == "workbench":
        scene.render.engine = "BLENDER_WORKBENCH"
        shading = scene.display.shading
        shading.light = "FLAT"  # studio light shades a front-lit mesh to about half its colour
        shading.color_type = "VERTEX"  # the active colour attribute ("Attribute" in the UI)
        shading.show_specular_highlight = False
    elif engine == "cycles":
        scene.render.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = samples
        scene.cycles.use_denoising = False
        world = bpy.data.worlds.new("audit world")
        if bpy.app.version < (5, 0, 0):
            world.use_nodes = True
        world.node_tree.nodes["Background"].inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
        world.node_tree.nodes["Background"].inputs["Strength"].default_value = 1.0
        scene.world = world
    else:
        raise ValueError(f"engine must be 'workbench' or 'cycles', got {engine!r}")

    mesh = obj.data
    out: dict[str, Path] = {}
    shown = (audit.summary_of(obj) or {}).get("shown", "patd")
    for view in ("colors", "heatmap"):
        if view == "colors":
            if mesh_import.COLOR_ATTRIBUTE not in mesh.color_attributes:
                continue
            audit.show_colors(obj)
        else:
            audit.show_heatmap(obj, shown)
        path = out_dir / f"{name}_{view}.png"
        with atomic.atomic_path(path) as tmp:
            scene.render.filepath = str(tmp)
            bpy.ops.render.render(write_still=True)
        _readable(path)
        out[view] = path
    return out


def save_blend(path: Path) -> None:
    with atomic.atomic_path(path) as tmp:
        tmp.unlink()  # saving over an existing file would leave a ".blend1" backup beside it
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True)
    _readable(path)


def _readable(path: Path) -> None:
    """Images and .blend files are for sharing: the temporary file's private 0600 mode is not wanted."""
    os.chmod(path, 0o644)


def run(mesh_path: str | os.PathLike, errors_path: str | os.PathLike, out_dir: str | os.PathLike, *,
        name: str | None = None, show: str = "patd", engine: str = "workbench", size: int = 768,
        up: str = "y", yaw_deg: float = 0.0, render: bool = True) -> dict[str, Path]:
    """Load, build, render (unless ``render=False``) and save; returns the paths written
    ({"blend", "colors", "heatmap"})."""
    from backend.meshio import load_mesh  # the project's environment (trimesh); not Blender's Python

    mesh = load_mesh(mesh_path, keep_vertex_order=True)  # the per-vertex errors follow the file
    colors = mesh.per_vertex_colors() if mesh.has_colors else None
    patd, pipatd = load_errors(errors_path, len(mesh.vertices))
    name = name or Path(mesh_path).stem
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    obj = build_scene(mesh.vertices, mesh.faces, colors, patd, pipatd, name=name, show=show, up=up,
                      yaw_deg=yaw_deg)
    paths = render_views(obj, out, name, engine=engine, size=size) if render else {}
    audit.show_heatmap(obj, show)  # the saved file opens on the heatmap
    paths["blend"] = out / f"{name}.blend"
    save_blend(paths["blend"])
    return paths


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser(prog="audit_blend.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("mesh", help="PLY/OBJ with vertex colours or a texture")
    parser.add_argument("errors", help="npz with per-vertex float arrays 'patd' and 'pipatd'")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--name", help="base name of the outputs (default: the mesh file's stem)")
    parser.add_argument("--heatmap", choices=audit.METRICS, default="patd", help="metric to colour by")
    parser.add_argument("--engine", choices=("workbench", "cycles"), default="workbench")
    parser.add_argument("--size", type=int, default=768, help="image size in pixels (square)")
    parser.add_argument("--up", choices=("y", "z"), default="y", help="the mesh's up axis (avatex: y)")
    parser.add_argument("--yaw", type=float, default=0.0, help="turn the mesh about the up axis (degrees)")
    parser.add_argument("--no-render", action="store_true", help="write the .blend only")
    args = parser.parse_args(argv)
    try:
        paths = run(args.mesh, args.errors, args.out, name=args.name, show=args.heatmap, engine=args.engine,
                    size=args.size, up=args.up, yaw_deg=args.yaw, render=not args.no_render)
    except (OSError, ValueError) as exc:
        print(f"audit_blend: error: {exc}", file=sys.stderr)
        return 2
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
