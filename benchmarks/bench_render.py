"""Benchmark: dataset rendering throughput against a naive baseline, in the same run.

* **avatex**: ``blender_addon.render.loop.render_subject`` writing a real dataset: the subject is
  imported once and only camera / light change between images (persistent data, resident textures,
  pixels written straight from Blender).
* **naive**: the same images, one ``bpy.ops.render.render`` each, with the scene rebuilt from scratch
  every time (factory reset, import, materials, camera, lights).

Both use the default dataset settings (Cycles CPU, 16 spp, OIDN FAST, 512², levels wild, intermediate,
clear + the albedo image per view). The default subject is scan-sized (THuman/2K2K scans have 100k-1M
vertices): the sample avatar subdivided to ~440k triangles with a 2048² texture; ``--subject avatar``
times the 27k-triangle avatar itself. Printed JSON: images per minute (wall clock and per CPU-minute, the
latter being robust to other load on the machine), the ratios, and the fraction of avatex's wall time
spent inside Blender's renderer. Run: ``.venv/bin/python benchmarks/bench_render.py [--views 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


AVATAR = ROOT / "tests" / "fixtures" / "avatars" / "avatar_0000.obj"


def make_scan(folder: Path, levels: int = 2, texture: int = 2048) -> Path:
    """A THuman-sized textured scan from the sample avatar: subdivided (27k -> ~440k triangles at level 2)
    with its texture upscaled to a 2048^2 JPEG. Built with Blender itself, then reset."""
    import bpy
    from PIL import Image

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.obj_import(filepath=str(AVATAR), forward_axis="Y", up_axis="Z")
    ob = bpy.context.selected_objects[0]
    bpy.context.view_layer.objects.active = ob
    mod = ob.modifiers.new("subdivide", "SUBSURF")
    mod.subdivision_type = "SIMPLE"
    mod.levels = mod.render_levels = levels
    bpy.ops.object.modifier_apply(modifier=mod.name)
    bpy.ops.object.modifier_add(type="TRIANGULATE")
    bpy.ops.object.modifier_apply(modifier=ob.modifiers[-1].name)
    folder.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.obj_export(filepath=str(folder / "scan.obj"), forward_axis="Y", up_axis="Z",
                          export_normals=False, path_mode="STRIP")
    image = AVATAR.with_suffix(".png")
    Image.open(image).convert("RGB").resize((texture, texture), Image.BILINEAR).save(folder / "scan.jpg",
                                                                                      quality=92)
    mtl = (folder / "scan.mtl").read_text()
    (folder / "scan.mtl").write_text(mtl.replace(f"map_Kd {image.name}", "map_Kd scan.jpg"))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return folder / "scan.obj"


def _triangles(mesh: Path) -> int:
    from backend.meshio import load_mesh

    return int(len(load_mesh(mesh).faces))


def run_avatex(mesh: Path, settings, out: Path) -> dict:
    from blender_addon.render import loop

    views = settings.view_list()
    t0, c0 = time.perf_counter(), _cpu()
    stats = loop.render_subject(out, "bench", mesh, settings, views, write_subject=True, emit=lambda e: None)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"images": stats["rendered_images"], "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "render_s": stats["render_seconds"]}


def run_naive(mesh: Path, settings, out: Path) -> dict:
    import bpy

    from avatex_core.lighting import image_seed, sample_light
    from blender_addon.render import materials
    from blender_addon.render.scene import SceneRig, bundled_environments, bundled_hdri_dir
    from blender_addon.render.subjects import load_subject, reset_scene

    envs = bundled_environments(bundled_hdri_dir())
    images = 0
    render_s = 0.0
    t0, c0 = time.perf_counter(), _cpu()
    for view in settings.view_list():
        for level in ("albedo", *settings.levels):
            scene = reset_scene()
            subject = load_subject("bench", mesh, settings.up)
            mats = materials.prepare(subject.meshes)
            rig = SceneRig(scene, settings, mats)
            rig.set_view(view)  # the naive script renders the full frame
            seed = image_seed(settings.seed, "bench", view.index, level)
            if level == "albedo":
                mats.set_albedo(True)
                rig.set_samples(albedo=True)
            else:
                rig.lights.apply(sample_light(settings.level_defs[level], seed, envs), view)
            scene.cycles.seed = seed
            t = time.perf_counter()
            bpy.ops.render.render(write_still=False)
            render_s += time.perf_counter() - t
            bpy.data.images["Render Result"].save_render(filepath=str(out / f"{view.name}_{level}.png"))
            images += 1
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"images": images, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "render_s": round(render_s, 3)}


def main() -> None:
    from avatex_core.render_options import DEFAULT_LEVELS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subject", default="scan",
                   help="'scan' (default: a THuman-sized scan made from the sample avatar, ~440k triangles, "
                        "2048^2 texture), 'avatar' (the sample avatar itself, 27k triangles) or a mesh path")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--levels", default=DEFAULT_LEVELS)
    p.add_argument("--repeat", type=int, default=1, help="alternate the two methods this many times")
    p.add_argument("--ablation", action="store_true",
                   help="also time avatex without the render region and without the BVH instance anchor")
    args = p.parse_args()

    from avatex_core.render_settings import RenderSettings
    from blender_addon.render import loop

    tmp_root = tempfile.TemporaryDirectory(prefix="bench_render_")
    if args.subject == "scan":
        mesh = make_scan(Path(tmp_root.name) / "scan")
    elif args.subject == "avatar":
        mesh = AVATAR
    else:
        mesh = Path(args.subject)
    settings = RenderSettings(views=args.views, step_deg=360.0 / args.views, resolution=args.resolution,
                              samples=args.samples, levels=tuple(args.levels.split(",")))
    triangles = _triangles(mesh)
    results: dict[str, list[dict]] = {"avatex": [], "naive": []}
    with tmp_root as tmp:
        # Warm-up: the first Cycles render of a process loads kernels; neither method should pay it.
        run_avatex(mesh, settings.with_(views=1), Path(tmp) / "warmup")
        for r in range(args.repeat):
            results["avatex"].append(run_avatex(mesh, settings, Path(tmp) / f"avatex{r}"))
            naive_dir = Path(tmp) / f"naive{r}"
            naive_dir.mkdir()
            results["naive"].append(run_naive(mesh, settings, naive_dir))
        ablation = {}
        if args.ablation:
            region, anchors = loop.SubjectRenderer.region, loop.add_instance_anchors
            loop.SubjectRenderer.region = lambda self, view: None
            ablation["without_region"] = run_avatex(mesh, settings, Path(tmp) / "no_region")
            loop.SubjectRenderer.region = region
            loop.add_instance_anchors = lambda scene, meshes: None
            ablation["without_anchor"] = run_avatex(mesh, settings, Path(tmp) / "no_anchor")
            loop.add_instance_anchors = anchors

    def best(runs: list[dict], key: str) -> dict:
        return min(runs, key=lambda x: x[key])

    fast_w, slow_w = best(results["avatex"], "wall_s"), best(results["naive"], "wall_s")
    fast_c, slow_c = best(results["avatex"], "cpu_s"), best(results["naive"], "cpu_s")
    n = fast_w["images"]

    def ipm(images: int, seconds: float) -> float:
        return round(images / seconds * 60.0, 2)

    out = {
        "benchmark": "render",
        "subject": args.subject, "mesh_triangles": triangles, "resolution": args.resolution,
        "samples": args.samples,
        "levels": settings.levels, "views": args.views, "images_per_run": n, "repeat": args.repeat,
        "avatex_images_per_min": ipm(n, fast_w["wall_s"]),
        "naive_images_per_min": ipm(n, slow_w["wall_s"]),
        "speedup": round(slow_w["wall_s"] / fast_w["wall_s"], 3),
        "avatex_images_per_cpu_min": ipm(n, fast_c["cpu_s"]),
        "naive_images_per_cpu_min": ipm(n, slow_c["cpu_s"]),
        "speedup_cpu": round(slow_c["cpu_s"] / fast_c["cpu_s"], 3),
        "avatex_fraction_in_renderer": round(fast_w["render_s"] / fast_w["wall_s"], 4),
        "naive_fraction_in_renderer": round(slow_w["render_s"] / slow_w["wall_s"], 4),
        "runs": results,
        "ablation": ablation,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
