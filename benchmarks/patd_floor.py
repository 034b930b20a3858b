"""The perfect-prediction floor of PATD / PIPATD in both flavours, at the GT densities the project uses.

    .venv/bin/python benchmarks/patd_floor.py [--pred-points 100000] [--dense 250000,1000000]

A perfect prediction has the GT's own colour field at its vertices: here ``--pred-points`` area-uniform
points on the GT surface (seed 1) coloured by ``ColoredMesh.colors_at`` (vertex colours interpolated
barycentrically, or the texture at the interpolated UV), as a reconstruction lying on the surface with
exact colours would be. Any PATD it scores is the metric's floor. GTs: the committed fixture avatar
``avatar_0000`` as a vertex-coloured PLY (13.7k vertices) and as a textured OBJ (14.9k), and both
subdivided once (each edge split at its midpoint, colours / UVs interpolated: 55k and 59k vertices),
so that the colour field stays the same while the tessellation is 4x finer.

Prints one JSON document: per GT, the "vertices" flavour (the paper's protocol) and the "dense"
flavour at each ``--dense`` sample count N (k = 8).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.meshio import ColoredMesh, load_mesh, sample_surface  # noqa: E402
from backend.metrics.patd import texture_distance  # noqa: E402

AVATARS = ROOT / "tests" / "fixtures" / "avatars"


def subdivided(mesh: ColoredMesh) -> ColoredMesh:
    """The same colour field on a 4x finer tessellation (midpoint subdivision)."""
    attrs = {"uv": mesh.uv} if mesh.has_texture else {"rgb": mesh.vertex_colors}
    v, f, a = trimesh.remesh.subdivide(mesh.vertices, mesh.faces, vertex_attributes=attrs)
    if mesh.has_texture:
        materials = None if mesh.face_material is None else np.repeat(mesh.face_material, 4)
        return ColoredMesh(vertices=v, faces=f, uv=a["uv"].astype(np.float32), textures=mesh.textures,
                           face_material=materials)
    return ColoredMesh(vertices=v, faces=f, vertex_colors=a["rgb"].astype(np.float32))


def floor(gt: ColoredMesh, points: int, dense: list[int]) -> dict:
    pts, face, bary = sample_surface(gt, points, np.random.default_rng(1))
    colors = gt.colors_at(face, bary)
    out: dict = {"gt_vertices": len(gt.vertices), "gt_faces": len(gt.faces), "textured": gt.has_texture}
    for n in [None, *dense]:
        t = time.perf_counter()
        s = texture_distance(pts, colors, gt, device="cpu", gt_samples=n).summary()
        key = "vertices" if n is None else f"dense_{n}"
        out[key] = {"patd": round(s["patd"]["mean"], 4), "pipatd": round(s["pipatd"]["mean"], 4),
                    "patd_p90": round(s["patd"]["p90"], 4), "seconds": round(time.perf_counter() - t, 2)}
        print(f"[{len(gt.vertices)} {'tex' if gt.has_texture else 'vc'}] {key}: {out[key]}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pred-points", type=int, default=100_000)
    ap.add_argument("--dense", default="250000,1000000", help="comma-separated sample counts N")
    args = ap.parse_args(argv)
    dense = [int(x) for x in args.dense.split(",") if x]
    results = {}
    for name in ("avatar_0000.ply", "avatar_0000.obj"):
        gt = load_mesh(AVATARS / name)
        results[name] = floor(gt, args.pred_points, dense)
        results[f"{name} subdivided"] = floor(subdivided(gt), args.pred_points, dense)
    print(json.dumps({"benchmark": "patd_floor", "pred_points": args.pred_points, "k": 8,
                      "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
