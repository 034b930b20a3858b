"""Benchmark: textured output (backend/recon/texture.py) vs the vertex-coloured mesh, on held-out avatars.

For each held-out clothed avatar of tests/fixtures/valid (persons always in the test split) and each
lighting level:

1. the project's renderer (``avatex render``, Blender through the bpy wheel, Cycles, 512²) draws the
   yaw-0 view under wild / intermediate / clear light; the dataset's canonical GT mesh is the reference;
2. ``reconstruct`` with the shipped checkpoint (backend/assets/pifu_small.pt) at resolution 256: the full
   vertex-coloured mesh;
3. ``texture_mesh`` decimates it to ``--faces`` (default 20k) and bakes ``--size`` (default 2048²)
   textures: ``net`` (the shipped defaults, including the surface low-pass ``DEFAULT_SMOOTH``), one
   ``net_smooth{sigma}`` per ``--smooths`` value (the same texel colours, another low-pass; 0 is the
   field as queried), and the visible-side detail ``image`` and ``blend``
   (:class:`backend.recon.texture.ImageDetail`, ``--sigmas``);
4. PATD against the GT, both meshes mapped back to the canonical space, in two flavours: *vertex* (each
   prediction's own vertices; the texture sampled at the decimated vertices' UVs) and *dense*
   (``--samples`` area-uniform surface points, colour interpolated from vertex colours or looked up in
   the texture): the fair footing for meshes of different vertex counts.

``--sweep-sizes`` (default 512 1024 2048) re-bakes the net texture of ``--sweep-level`` at
each size. Timing (first avatar, ``--size``): the bake's batched colour queries versus the same queries
one texel per network call on ``--sample`` texels, extrapolated (the baseline), and versus the
vertex-colour stage of the same reconstruction. Printed as JSON; ``--out`` writes it after each avatar.

    .venv/bin/python benchmarks/bench_texture.py [--avatars Black_M_3_Milit ...] [--levels wild clear]
        [--size 2048] [--sweep-sizes 512 1024 2048 4096] [--faces 20000] [--snap] [--smooths 0 0.018]
        [--library ../shared/data/valid --avatars NAME ...] [--no-detail] [--no-timing]
        [--out benchmarks/results_texture.json]

The default low-pass was chosen with ``--library`` pointing at validation avatars of the protocol's split
(docs/api.md, "Textured output"); the default avatars are the held-out ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avatex_core import canonical
from avatex_core.progress import NULL
from backend.evaluation.framing import reconstruction_to_canonical
from backend.meshio import ColoredMesh, load_mesh, sample_surface
from backend.metrics.patd import gt_point_set, texture_distance
from backend.models.checkpoint import load_checkpoint
from backend.recon import reconstruct
from backend.recon.framing import frame_subject
from backend.recon.pipeline import _vertex_colors
from backend.recon.texture import DEFAULT_SMOOTH, ImageDetail, TexturedMesh, bake_texture, texture_mesh

ROOT = Path(__file__).resolve().parents[1]
VALID = ROOT / "tests" / "fixtures" / "valid"
AVATARS = ("Black_M_3_Milit", "Hispanic_F_2_Util", "White_M_1_Casual")
LEVELS = ("wild", "intermediate", "clear")
CHECKPOINT = ROOT / "backend" / "assets" / "pifu_small.pt"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def render(avatars: list[str], dataset: Path, library: Path = VALID) -> None:
    """The yaw-0 view of every avatar under the three paper levels (resumes a finished dataset)."""
    meshes = [str(library / a / f"{a}.obj") for a in avatars]
    cmd = [sys.executable, "-m", "backend", "render", "--meshes", *meshes, "--out", str(dataset),
           "--views", "1", "--levels", ",".join(LEVELS), "--resolution", "512", "--samples", "16"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"render failed: {proc.stderr[-2000:]}")


def read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"), dtype=np.uint8)


class CachedColors:
    """The colour net at points, remembering the last query: the image-detail variants bake the same
    atlas and points as the net texture, so they reuse its colours instead of querying again."""

    def __init__(self, model, framed, calib: torch.Tensor) -> None:
        self.model, self.framed, self.calib = model, framed, calib
        self.key: tuple | None = None
        self.value: np.ndarray | None = None

    def __call__(self, points: np.ndarray) -> np.ndarray:
        key = (points.shape, hash(points.tobytes()))
        if key != self.key:
            self.value = _vertex_colors(self.model, self.framed, points, self.calib, torch.device("cpu"),
                                        None, 16384, NULL)[0]
            self.key = key
        return self.value


def dense_points(mesh: ColoredMesh, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    points, face, bary = sample_surface(mesh, count, np.random.default_rng(seed))
    return points, mesh.colors_at(face, bary)


def patd(points: np.ndarray, colors: np.ndarray, gt: ColoredMesh) -> float:
    summary = texture_distance(points, colors, gt, device="cpu", rng=0).summary()
    return round(float(summary["patd"]["mean"]), 3)


def textured_canonical(tm, rec, calib: np.ndarray) -> ColoredMesh:
    vertices = reconstruction_to_canonical(tm.vertices, rec.stats, calib).astype(np.float64)
    return ColoredMesh(vertices, tm.faces.astype(np.int64), uv=tm.uv, textures=[tm.texture],
                       face_material=np.zeros(len(tm.faces), np.int32))


def scores(mesh: ColoredMesh, gt: ColoredMesh, samples: int, seeds: list[int], paired: np.ndarray) -> dict:
    """PATD of one prediction: *vertex*, *dense* (mean over ``seeds`` of ``samples`` area-uniform
    points; one draw of 200k moves the mean by about ±0.02, as much as the effects measured here) and
    *paired* (the full mesh's dense points of seed 0, coloured by this mesh at its closest surface
    point: every prediction is compared on the same points, so the sampling noise cancels)."""
    from backend.metrics.geometry import point_to_surface

    dense = [patd(*dense_points(mesh, samples, s), gt) for s in seeds]
    _, face, closest = point_to_surface(paired, mesh.vertices, mesh.faces)
    return {"vertex": patd(mesh.vertices, mesh.per_vertex_colors(), gt),
            "dense": round(float(np.mean(dense)), 3), "dense_per_seed": dense,
            "paired": patd(paired, mesh.colors_at(face, _barycentric(mesh, face, closest)), gt)}


def _barycentric(mesh: ColoredMesh, face: np.ndarray, points: np.ndarray) -> np.ndarray:
    a, b, c = (mesh.vertices[mesh.faces[face, i]] for i in range(3))
    v0, v1, v2 = b - a, c - a, points - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = d00 * d11 - d01 * d01
    den = np.where(den == 0, 1.0, den)
    l1, l2 = (d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den
    bary = np.clip(np.stack([1 - l1 - l2, l1, l2], axis=1), 0, 1)
    return bary / np.maximum(bary.sum(axis=1, keepdims=True), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avatars", nargs="+", default=list(AVATARS))
    parser.add_argument("--library", type=Path, default=VALID,
                        help="folder of NAME/NAME.obj avatars (default: the held-out tests/fixtures/valid)")
    parser.add_argument("--smooths", type=float, nargs="*", default=[],
                        help="extra net textures with this surface low-pass sigma (canonical units)")
    parser.add_argument("--no-detail", action="store_true", help="skip the image / blend variants")
    parser.add_argument("--no-timing", action="store_true", help="skip the per-texel timing baseline")
    parser.add_argument("--levels", nargs="+", default=list(LEVELS), choices=LEVELS)
    parser.add_argument("--size", type=int, default=2048, help="texture size of the variants")
    parser.add_argument("--sweep-sizes", type=int, nargs="*", default=[512, 1024, 2048])
    parser.add_argument("--sweep-level", default="intermediate", choices=LEVELS)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[4.0], help="blend high-pass scales (px)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="dense-flavour draws")
    parser.add_argument("--snap", action="store_true", help="query at the full surface's closest point")
    parser.add_argument("--faces", type=int, default=20_000)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--samples", type=int, default=200_000, help="dense-flavour points per prediction")
    parser.add_argument("--sample", type=int, default=300, help="texels queried one by one (baseline)")
    parser.add_argument("--dataset", type=Path, default=None, help="render into / reuse this folder")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    torch.manual_seed(0)
    dataset = args.dataset or Path(tempfile.mkdtemp(prefix="avatex-bench-texture-"))
    t = time.perf_counter()
    render(args.avatars, dataset, args.library)
    log(f"rendered in {time.perf_counter() - t:.0f} s -> {dataset}")
    model, _ = load_checkpoint(CHECKPOINT, device="cpu")
    model.eval()
    calib = canonical.calib_for_view(0.0)
    calib_t = torch.from_numpy(calib).float().unsqueeze(0)
    rows, timing = [], None
    for name in args.avatars:
        subject = dataset / "subjects" / name
        gt_mesh = load_mesh(subject / "mesh.obj")
        points, rgb, _, _ = gt_point_set(gt_mesh, rng=0)   # 1M samples, shared by all predictions
        gt = ColoredMesh(points, np.zeros((0, 3), np.int64), vertex_colors=rgb.astype(np.float32))
        for level in args.levels:
            image = read_image(subject / "views" / "v000" / f"{level}.png")
            rec = reconstruct(model, image, resolution=args.resolution, device="cpu")
            full = ColoredMesh(reconstruction_to_canonical(rec.vertices, rec.stats, calib).astype(np.float64),
                               rec.faces.astype(np.int64), vertex_colors=rec.colors)
            paired = sample_surface(full, args.samples, np.random.default_rng(0))[0]
            row = {"avatar": name, "level": level, "full_vertices": len(rec.vertices),
                   "full_faces": len(rec.faces),
                   "vertex_colored_full": scores(full, gt, args.samples, args.seeds, paired),
                   "textured": {}, "sizes": {}}
            log(f"{name} {level}: {len(rec.vertices)} vertices, full {row['vertex_colored_full']}")
            framed = frame_subject(image, None, size=model.config.load_size)
            with torch.inference_mode():
                model.encode(torch.from_numpy(framed.network_input()))
                colors = CachedColors(model, framed, calib_t)
                tm = texture_mesh(rec.vertices, rec.faces, colors, size=args.size, target_faces=args.faces,
                                  snap=args.snap)
                if timing is None and not args.no_timing:
                    timing = time_bake(tm, rec, model, framed, calib_t, args.sample)
                variants = {"net": tm}
                # The same atlas and texel points: the other variants reuse the net's colours.
                reference = (rec.vertices, rec.faces) if args.snap else None
                for smooth in args.smooths:
                    texture, _ = bake_texture(colors, tm.vertices, tm.faces, tm.uv, args.size,
                                              reference=reference, smooth=smooth)
                    variants[f"net_smooth{smooth:g}"] = TexturedMesh(tm.vertices, tm.faces, tm.uv, texture)
                details = [] if args.no_detail else [("image", 0.0)] + [("blend", s) for s in args.sigmas]
                for mode, sigma in details:
                    detail = ImageDetail.from_view(framed.rgb, framed.mask, rec.vertices, rec.faces, calib,
                                                   mode, **({"sigma": sigma} if sigma else {}))
                    texture, _ = bake_texture(colors, tm.vertices, tm.faces, tm.uv, args.size,
                                              reference=reference, detail=detail)
                    label = mode if mode == "image" else f"blend_sigma{sigma:g}"
                    variants[label] = TexturedMesh(tm.vertices, tm.faces, tm.uv, texture,
                                                   {"detail": detail.stats})
                for label, variant in variants.items():
                    row["textured"][label] = {**scores(textured_canonical(variant, rec, calib), gt,
                                                       args.samples, args.seeds, paired),
                                              "faces": len(variant.faces)}
                    if "detail" in variant.stats:
                        row["textured"][label]["detail"] = variant.stats["detail"]
                    log(f"{name} {level} {label}: {row['textured'][label]}")
                row["textured"]["net"]["seconds"] = tm.stats["seconds"]
                if level == args.sweep_level:
                    for size in args.sweep_sizes:
                        sized = tm if size == args.size else texture_mesh(
                            rec.vertices, rec.faces, colors, size=size, target_faces=args.faces,
                            snap=args.snap)
                        row["sizes"][str(size)] = {**scores(textured_canonical(sized, rec, calib), gt,
                                                            args.samples, args.seeds, paired),
                                                   "texels": sized.stats["texels"],
                                                   "bake_s": round(sum(sized.stats["seconds"].values()), 2)}
                        log(f"{name} {level} {size}²: {row['sizes'][str(size)]}")
            rows.append(row)
            print(json.dumps(row), flush=True)
            report = summarise(rows, timing, args)
            if args.out is not None:   # after every image, so a stopped run still leaves its figures
                from avatex_core.atomic import write_text

                write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def time_bake(tm, rec, model, framed, calib_t: torch.Tensor, sample: int) -> dict:
    """The batched bake against per-texel queries (measured on ``sample`` texels, extrapolated) and
    against the vertex-colour stage of the same reconstruction."""
    timing = {"size": tm.stats["texture_size"], "texels": tm.stats["texels"],
              "batched_query_s": tm.stats["query_seconds"], "snap_s": tm.stats.get("snap_seconds"),
              "bake_total_s": round(sum(tm.stats["seconds"].values()), 3),
              "vertex_color_stage_s": rec.stats["seconds"]["color"], "full_vertices": len(rec.vertices)}
    pts = tm.vertices[:sample].astype(np.float32)
    t = time.perf_counter()
    for p in pts:
        _vertex_colors(model, framed, p[None], calib_t, torch.device("cpu"), False, 1, NULL)
    per_texel = (time.perf_counter() - t) / len(pts)
    timing["unbatched_query_s_extrapolated"] = round(per_texel * tm.stats["texels"], 1)
    timing["ratio_unbatched_over_batched"] = round(
        timing["unbatched_query_s_extrapolated"] / timing["batched_query_s"], 1)
    timing["ratio_bake_over_vertex_colors"] = round(
        timing["bake_total_s"] / max(rec.stats["seconds"]["color"], 1e-9), 1)
    return timing


def summarise(rows: list[dict], timing: dict | None, args: argparse.Namespace) -> dict:
    def mean(values) -> float:
        return round(float(np.mean(values)), 3)

    labels = list(rows[0]["textured"])

    def flavours(sel: list[dict]) -> dict:
        return {f: {"full_vertex_colored": mean([r["vertex_colored_full"][f] for r in sel]),
                    **{lab: mean([r["textured"][lab][f] for r in sel]) for lab in labels}}
                for f in ("dense", "paired", "vertex")}
    per_level = {}
    for level in args.levels:
        sel = [r for r in rows if r["level"] == level]
        if not sel:
            continue
        per_level[level] = flavours(sel)
    overall = flavours(rows)
    swept = [r for r in rows if r["sizes"]]
    sizes = {s: {f: mean([r["sizes"][s][f] for r in swept]) for f in ("dense", "paired")}
             for s in (swept[0]["sizes"] if swept else {})}
    return {"benchmark": "texture", "avatars": sorted({r["avatar"] for r in rows}), "levels": args.levels,
            "faces": args.faces, "size": args.size, "snap": args.snap, "seeds": args.seeds,
            "smooth": DEFAULT_SMOOTH, "library": str(args.library),
            "samples": args.samples, "resolution": args.resolution,
            "checkpoint": CHECKPOINT.name, "device": "cpu", "threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()),
            "patd_mean": {"overall": overall, "per_level": per_level,
                                f"sizes_{args.sweep_level}": sizes},
            "timing": timing, "per_image": rows}


if __name__ == "__main__":
    main()
