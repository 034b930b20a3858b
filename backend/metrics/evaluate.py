"""One evaluation of a reconstructed coloured mesh against its GT: the report ``avatex evaluate`` prints.

The report is a JSON-ready dict (documented in docs/metrics.md) so the CLI, the server and the table
builder share one shape; the per-vertex arrays go to an ``.npz`` for Blender.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from avatex_core.atomic import write_with
from avatex_core.progress import NULL, Progress
from backend.errors import InputError
from backend.meshio import ColoredMesh
from backend.metrics.geometry import DEFAULT_SAMPLES, geometry_metrics
from backend.metrics.patd import DEFAULT_K, TextureDistance, texture_distance


def evaluate_meshes(pred: ColoredMesh, gt: ColoredMesh, *, k: int = DEFAULT_K, gt_samples: int | None = None,
                    seed: int = 0, device=None, geometry: bool = True,
                    geometry_samples: int = DEFAULT_SAMPLES, cm_per_unit: float | None = None,
                    progress: Progress = NULL) -> tuple[dict, TextureDistance]:
    """(report, per-vertex result) for ``pred`` (its vertices and their colours) against ``gt``.

    Report keys: ``patd_mean``, ``pipatd_mean`` (the headline numbers), ``patd`` / ``pipatd``
    ({mean, median, p90}), ``k``, ``gt_points``, ``gt_kind``, ``vertices``, ``clipped``, ``device``,
    ``engine``, ``geometry`` (GeometryMetrics.to_dict() or None) and ``seconds``.
    """
    if not pred.has_colors:
        raise InputError("the reconstructed mesh has no colours (vertex colours or a texture)")
    colors = pred.per_vertex_colors()
    t0 = time.perf_counter()

    td = texture_distance(pred.vertices, colors, gt, k=k, device=device, gt_samples=gt_samples,
                          rng=np.random.default_rng(seed),
                          progress=progress.sub(0.0, 0.6 if geometry else 1.0))
    t1 = time.perf_counter()
    summary = td.summary()
    report = {"patd_mean": summary["patd"]["mean"], "pipatd_mean": summary["pipatd"]["mean"], **summary,
              "geometry": None}
    seconds = {"texture": t1 - t0}
    if geometry:
        progress.report("geometry", 0.6)
        progress.check("evaluation cancelled")
        report["geometry"] = geometry_metrics(pred.vertices, pred.faces, gt.vertices, gt.faces,
                                              samples=geometry_samples, rng=np.random.default_rng(seed),
                                              cm_per_unit=cm_per_unit).to_dict()
        seconds["geometry"] = time.perf_counter() - t1
    report["seconds"] = seconds
    progress.report("done", 1.0)
    return report, td


def write_per_vertex(path: str | Path, td: TextureDistance) -> Path:
    """Write ``patd``, ``pipatd`` (float32), ``nearest`` (int64), ``k`` and ``gt_kind`` to an .npz atomically.

    With surface-sample GT points, ``gt_positions`` (M, 3) float32 is included so ``nearest`` can be
    resolved to a position.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise InputError(f"per-vertex output must be an .npz file, got {path}")
    arrays = {"patd": td.patd, "pipatd": td.pipatd, "nearest": td.nearest, "k": np.int64(td.k),
              "gt_kind": np.str_(td.gt_kind), "gt_points": np.int64(td.gt_points)}
    if td.gt_positions is not None:
        arrays["gt_positions"] = td.gt_positions
    write_with(path, lambda fh: np.savez(fh, **arrays))
    return path


def format_report(report: dict, pred: str = "", gt: str = "") -> str:
    """The readable summary ``avatex evaluate`` prints."""
    lines = []
    if pred or gt:
        lines.append(f"{pred}  vs  GT {gt}")
    kind = "GT vertices" if report["gt_kind"] == "vertices" else "GT surface samples"
    lines.append(f"{report['vertices']:,} reconstructed vertices against {report['gt_points']:,} {kind} "
                 f"(ΔE00, sRGB → CIELAB D65)")
    for key, label, note in (("patd", "PATD  ", "nearest GT point"),
                             ("pipatd", "PIPATD", f"best of the k = {report['k']} nearest GT points")):
        s = report[key]
        lines.append(f"  {label}  mean {s['mean']:7.3f}   median {s['median']:7.3f}   p90 {s['p90']:7.3f}"
                     f"   ({note})")
    clipped = report["clipped"]
    for side, what in (("pred", "reconstruction"), ("gt", "GT")):
        if clipped[side]:
            lines.append(f"  note: {clipped[side]:,} colour component(s) of the {what} were outside [0, 1] "
                         f"and were clipped")
    geo = report.get("geometry")
    if geo:
        cm = geo.get("cm_per_unit")
        lines.append(f"Geometry ({geo['samples']:,} surface samples per mesh; mesh units"
                     + (", cm" if cm else "") + ")")
        for key, label in (("pred_to_gt", "pred → GT surface"), ("gt_to_pred", "GT → pred surface"),
                           ("chamfer", "Chamfer (mean of both)")):
            text = f"  {label:<24}{geo[key]:.5f}"
            if cm:
                text += f"   {geo[key + '_cm']:.3f} cm"
            lines.append(text)
        nc = geo["normal_consistency"]
        lines.append(f"  {'normal consistency':<24}{nc:.4f}   (mean |cos|, 1 = perfect)")
    return "\n".join(lines)
