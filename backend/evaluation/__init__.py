"""Evaluate models on a relit dataset: PATD / PIPATD, geometry and image-space metrics per lighting level.

    from backend.evaluation import evaluate_runs
    ev = evaluate_runs({"baseline": "runs/base", "ssim": "runs/ssim"}, "data/relit", out_dir="eval")
    ev.table            # {model: {level: {"patd": ..., "pipatd": ..., "chamfer_cm": ..., "psnr_input": ...}}}
    ev.write_tables("eval/table")                      # table.md + table.csv, the paper's layout

docs/metrics.md ("Evaluating models on a dataset") has the protocol and every key.
"""

from backend.evaluation.framing import (
    canonical_to_recon,
    recon_to_canonical,
    reconstruction_to_canonical,
    view_rotation_from_calib,
)
from backend.evaluation.models import geometry_key, resolve_checkpoint
from backend.evaluation.run import (
    DEFAULT_VIEWS,
    EvalConfig,
    EvalPlan,
    Evaluation,
    color_vertices,
    evaluate_runs,
    execute,
    load_evaluation,
    plan,
)
from backend.evaluation.views import novel_views

__all__ = [
    "DEFAULT_VIEWS",
    "EvalConfig",
    "EvalPlan",
    "Evaluation",
    "canonical_to_recon",
    "color_vertices",
    "evaluate_runs",
    "execute",
    "geometry_key",
    "load_evaluation",
    "novel_views",
    "plan",
    "recon_to_canonical",
    "reconstruction_to_canonical",
    "resolve_checkpoint",
    "view_rotation_from_calib",
]
