"""avatex evaluate: PATD/PIPATD texture distances and geometry metrics of a reconstruction against its GT.

Both meshes must be in the same space (e.g. both canonical, as `avatex reconstruct` writes them and the
dataset stores GT meshes): nothing is aligned here. PATD is the mean CIEDE2000 colour difference
between each reconstructed vertex and its nearest GT point; PIPATD takes the best of the k nearest GT
points. Both are reported in two flavours: against the GT's vertices (the paper's protocol) and against
dense GT surface samples with interpolated colours (``*_dense``, whose floor does not depend on the GT's
tessellation). Geometry: point-to-surface in both directions, Chamfer, normal consistency.
docs/metrics.md has the exact definitions and the JSON layout.
"""

from __future__ import annotations

import argparse

HELP = "PATD/PIPATD (per vertex) and geometry metrics of a reconstructed mesh against its GT mesh"
PATHS = ("pred", "gt", "out")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, metavar="MESH",
                        help="reconstructed mesh with vertex colours (PLY/OBJ/GLB), same space as --gt")
    parser.add_argument("--gt", required=True, metavar="MESH",
                        help="ground-truth mesh with vertex colours or a texture, same space as --pred")
    parser.add_argument("--k", type=int, default=8, help="neighbours for PIPATD (default 8)")
    parser.add_argument("--gt-samples", type=int, default=None, metavar="N",
                        help="surface samples of the GT for the dense PATD / PIPATD (default 500,000); "
                             "PATD / PIPATD proper are always against the GT's vertices, as in the paper")
    parser.add_argument("--seed", type=int, default=0, help="seed of the surface samples (default 0)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", metavar="PER_VERTEX.npz",
                        help="write per-vertex patd, pipatd, nearest (for Blender) to this .npz")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="where to compute (default: CUDA when available, else CPU)")
    parser.add_argument("--no-geometry", action="store_true", help="skip the geometry metrics")
    parser.add_argument("--geometry-samples", type=int, default=100_000, metavar="N",
                        help="surface samples per mesh for the geometry metrics (default 100,000)")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--subject-height", type=float, metavar="METRES",
                       help="the subject's real height, for canonical-space meshes: adds centimetres")
    scale.add_argument("--cm-per-unit", type=float, metavar="CM",
                       help="centimetres per mesh unit (100 for meshes in metres): adds centimetres")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from tqdm import tqdm

    from avatex_core.progress import Progress
    from backend.errors import InputError
    from backend.meshio import load_mesh
    from backend.metrics.evaluate import evaluate_meshes, format_report, write_per_vertex
    from backend.metrics.geometry import cm_per_canonical_unit

    if args.out is not None and not str(args.out).lower().endswith(".npz"):
        raise InputError(f"--out must name an .npz file, got {args.out}")
    cm_per_unit = args.cm_per_unit
    if args.subject_height is not None:
        cm_per_unit = cm_per_canonical_unit(args.subject_height)
    pred = load_mesh(args.pred, keep_vertex_order=True)  # --out's per-vertex arrays follow the file
    gt = load_mesh(args.gt)
    for path, mesh in ((args.pred, pred), (args.gt, gt)):
        if mesh.repairs:
            print(f"avatex evaluate: {path}: mesh repaired: {'; '.join(mesh.repairs)}", file=sys.stderr)
    bar = tqdm(total=100, desc="evaluate", file=sys.stderr, disable=None,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def progress(stage: str, fraction: float, info: dict) -> None:
        bar.set_postfix_str(stage)
        bar.update(max(0, round(fraction * 100) - bar.n))

    try:
        report, td = evaluate_meshes(pred, gt, k=args.k, gt_samples=args.gt_samples, seed=args.seed,
                                     device=args.device, geometry=not args.no_geometry,
                                     geometry_samples=args.geometry_samples, cm_per_unit=cm_per_unit,
                                     progress=Progress(progress, interval_s=0.1))
    finally:
        bar.close()
    report = {"pred": str(args.pred), "gt": str(args.gt), **report, "per_vertex": None}
    if args.out is not None:
        report["per_vertex"] = str(write_per_vertex(args.out, td))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, args.pred, args.gt))
        if report["per_vertex"]:
            print(f"per-vertex patd / pipatd / nearest (+ _dense) written to {report['per_vertex']}")
    return 0
