"""Benchmark: textured output (backend/recon/texture.py) vs the vertex-coloured mesh, on held-out avatars.

For each avatar of tests/fixtures/avatars (synth seed 8, never seen by the shipped checkpoint):

1. an unlit front view (yaw 0, 512²) of the GT in the canonical space: an orthographic z-buffer render
   in numpy with the GT texture's colours (the renderer's albedo pass would serve too; this keeps the
   benchmark free of Blender), its alpha the subject mask;
2. ``reconstruct_textured`` with the shipped checkpoint (backend/assets/pifu_small.pt) at resolution 256,
   the textured mesh decimated to ``--faces`` (default 20k) and baked at each ``--sizes``;
3. PATD against the GT, both meshes mapped back to the canonical space of the view, in two flavours:
   *vertex* (each prediction's own vertices and their colours: the texture is sampled at the decimated
   vertices' UVs) and *dense* (``--samples`` area-uniform surface points of each prediction, colour
   interpolated from vertex colours or looked up in the texture), the fair footing for meshes of
   different vertex counts.

Timing (first avatar, 2048² unless not in --sizes): the bake's batched colour queries versus the same
queries one texel per network call, measured on ``--sample`` texels and extrapolated (the baseline),
and versus the vertex-colour stage of the same reconstruction. Printed as JSON.

    .venv/bin/python benchmarks/bench_texture.py [--avatars 0 1] [--sizes 512 1024 2048] [--faces 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from avatex_core import canonical
from backend.evaluation.framing import reconstruction_to_canonical
from backend.meshio import ColoredMesh, load_mesh, sample_surface
from backend.metrics.patd import gt_point_set, texture_distance
from backend.models.checkpoint import load_checkpoint
from backend.recon.framing import frame_subject
from backend.recon.pipeline import _vertex_colors
from backend.recon.texture import rasterize, reconstruct_textured, texture_mesh

ROOT = Path(__file__).resolve().parents[1]
AVATARS = ROOT / "tests" / "fixtures" / "avatars"
CHECKPOINT = ROOT / "backend" / "assets" / "pifu_small.pt"


def canonical_gt(index: int) -> tuple[ColoredMesh, ColoredMesh]:
    """(the textured GT in the canonical space, its PATD point set: 1M texture-coloured surface samples,
    drawn once so every prediction of the avatar meets the same GT points)."""
    mesh = load_mesh(AVATARS / f"avatar_{index:04d}.obj")
    norm = canonical.normalization_for(mesh.vertices)
    mesh.vertices = norm.apply(mesh.vertices)
    points, rgb, _, _ = gt_point_set(mesh, rng=0)
    return mesh, ColoredMesh(points, np.zeros((0, 3), np.int64), vertex_colors=rgb.astype(np.float32))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def front_view(gt: ColoredMesh, size: int = 512) -> np.ndarray:
    """RGBA uint8 orthographic render of ``gt`` from the yaw-0 camera (nearest surface per pixel)."""
    calib = canonical.calib_for_view(0.0)
    proj = canonical.project(gt.vertices, calib)
    xy = canonical.to_pixels(proj[:, :2], size) + 0.5    # rasterize puts pixel centres at i + 0.5
    pix, face, bary = rasterize(xy, gt.faces, size, size, unique=False)
    depth = np.einsum("kc,kc->k", bary, proj[gt.faces[face], 2])
    order = np.lexsort((-depth, pix))                      # nearest first: +z points at the camera
    pix, face, bary = pix[order], face[order], bary[order]
    first = np.r_[True, pix[1:] != pix[:-1]]
    colors = gt.colors_at(face[first], bary[first])
    image = np.zeros((size * size, 4), np.uint8)
    image[pix[first], :3] = np.clip(np.rint(colors * 255), 0, 255).astype(np.uint8)
    image[pix[first], 3] = 255
    return image.reshape(size, size, 4)


def dense_points(mesh: ColoredMesh, count: int) -> tuple[np.ndarray, np.ndarray]:
    points, face, bary = sample_surface(mesh, count, np.random.default_rng(0))
    return points, mesh.colors_at(face, bary)


def patd(points: np.ndarray, colors: np.ndarray, gt: ColoredMesh) -> float:
    summary = texture_distance(points, colors, gt, device="cpu", rng=0).summary()
    return round(float(summary["patd"]["mean"]), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avatars", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--faces", type=int, default=20_000)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--samples", type=int, default=200_000, help="dense-flavour points per prediction")
    parser.add_argument("--sample", type=int, default=300, help="texels queried one by one (baseline)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, _ = load_checkpoint(CHECKPOINT, device="cpu")
    calib = canonical.calib_for_view(0.0)
    rows, timing = [], None
    for index in args.avatars:
        gt_mesh, gt = canonical_gt(index)
        image = front_view(gt_mesh)
        log(f"avatar_{index:04d}: rendered")
        rec, first = reconstruct_textured(model, image, texture_size=args.sizes[0], target_faces=args.faces,
                                          resolution=args.resolution, device="cpu")
        full = ColoredMesh(reconstruction_to_canonical(rec.vertices, rec.stats, calib).astype(np.float64),
                           rec.faces.astype(np.int64), vertex_colors=rec.colors)
        row = {"avatar": f"avatar_{index:04d}", "full_vertices": len(rec.vertices),
               "full_faces": len(rec.faces),
               "vertex_colored_full": {"vertex": patd(full.vertices, rec.colors, gt),
                                       "dense": patd(*dense_points(full, args.samples), gt)},
               "textured": {}}
        log(f"avatar_{index:04d}: reconstructed, {len(rec.vertices)} vertices, full-mesh PATD done")
        framed = frame_subject(image, None, size=model.config.load_size)
        calib_t = torch.from_numpy(calib).float().unsqueeze(0)
        with torch.inference_mode():
            img_np, mask_np = framed.network_input()
            model.encode(torch.from_numpy(img_np), torch.from_numpy(mask_np))

            def color_fn(points: np.ndarray, framed=framed, calib_t=calib_t) -> np.ndarray:
                return _vertex_colors(model, framed, points, calib_t, torch.device("cpu"), None, 1024,
                                      lambda *a: None, None)[0]

            for size in args.sizes:
                tm = first if size == args.sizes[0] else texture_mesh(rec.vertices, rec.faces, color_fn,
                                                                      size=size, target_faces=args.faces)
                vertices = reconstruction_to_canonical(tm.vertices, rec.stats, calib).astype(np.float64)
                mesh = ColoredMesh(vertices, tm.faces.astype(np.int64), uv=tm.uv, textures=[tm.texture],
                                   face_material=np.zeros(len(tm.faces), np.int32))
                row["textured"][str(size)] = {
                    "faces": len(tm.faces), "vertex": patd(mesh.vertices, mesh.per_vertex_colors(), gt),
                    "dense": patd(*dense_points(mesh, args.samples), gt), "seconds": tm.stats["seconds"],
                    "texels": tm.stats["texels"], "uncharted_faces": tm.stats["uncharted_faces"]}
                log(f"avatar_{index:04d}: {size}² {row['textured'][str(size)]}")
                if timing is None and size == max(args.sizes):
                    timing = {"size": size, "texels": tm.stats["texels"],
                              "batched_query_s": tm.stats["query_seconds"],
                              "bake_total_s": round(sum(tm.stats["seconds"].values()), 3),
                              "vertex_color_stage_s": rec.stats["seconds"]["color"],
                              "full_vertices": len(rec.vertices)}
                    pts = tm.vertices[:args.sample].astype(np.float32)
                    t = time.perf_counter()
                    for p in pts:
                        _vertex_colors(model, framed, p[None], calib_t, torch.device("cpu"), False, 1,
                                       lambda *a: None, None)
                    per_texel = (time.perf_counter() - t) / len(pts)
                    timing["unbatched_query_s_extrapolated"] = round(per_texel * tm.stats["texels"], 1)
                    timing["ratio_unbatched_over_batched"] = round(
                        timing["unbatched_query_s_extrapolated"] / timing["batched_query_s"], 1)
                    timing["ratio_bake_over_vertex_colors"] = round(
                        timing["bake_total_s"] / max(rec.stats["seconds"]["color"], 1e-9), 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        report = summarise(rows, timing, args)
        if args.out is not None:   # after every avatar, so a stopped run still leaves its figures
            from avatex_core.atomic import write_text

            write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def summarise(rows: list[dict], timing: dict | None, args: argparse.Namespace) -> dict:
    def mean(get) -> float:
        return round(float(np.mean([get(r) for r in rows])), 3)

    summary = {"full_vertex_colored": {f: mean(lambda r, f=f: r["vertex_colored_full"][f])
                                       for f in ("vertex", "dense")},
               "textured": {str(s): {f: mean(lambda r, s=s, f=f: r["textured"][str(s)][f])
                                     for f in ("vertex", "dense")} for s in args.sizes}}
    return {"benchmark": "texture", "avatars": [r["avatar"] for r in rows], "faces": args.faces,
            "resolution": args.resolution, "checkpoint": CHECKPOINT.name, "device": "cpu",
            "threads": torch.get_num_threads(), "load_average": list(os.getloadavg()),
            "patd_mean_over_avatars": summary, "timing": timing, "per_avatar": rows}


if __name__ == "__main__":
    main()
