"""The experiment's results folder: the paper-layout table, all metrics, plots, side-by-side images and
a Markdown report that puts this run's numbers beside the paper's and says how the two set-ups differ.

    results/table.md, table.csv        PATD / PIPATD per level x model (the paper's layout)
    results/metrics.md, metrics.csv    every metric of the evaluation (geometry, image space) per level
    results/evaluation.json            per-item values (evaluate_runs)
    results/plots/*.png                training curves, per-level bars beside the paper's
    results/images/*.png               per held-out subject: input | GT | 3 reconstructions | 3 heatmaps
    results/report.md, command.md      the report; the command, machine and wall time per stage

The side-by-side images come from ``render_scripts/audit_blend.py`` (Blender, run as a subprocess: the
backend never imports bpy) on the evaluation's kept meshes and per-vertex errors; the GT column is the
dataset's albedo render of the same view, the input column its relit render.

Modules: :mod:`.prose` (labels, the paper's table, tables and Markdown), :mod:`.grids` (image grids),
:mod:`.blender` (the one Blender subprocess) and :mod:`.results` (:func:`write_results`, which writes the
folder).
"""

from backend.experiment.report.blender import AUDIT_SCRIPT, audit_images
from backend.experiment.report.grids import compose_grid, subject_grid
from backend.experiment.report.prose import (
    LABELS,
    LEVELS,
    MODELS,
    SEED_LABELS,
    SEED_TABLE,
    differences,
    labelled,
    observations,
    quote_command,
    report_markdown,
    side_by_side,
    write_command,
)
from backend.experiment.report.results import write_results

__all__ = ["AUDIT_SCRIPT", "LABELS", "LEVELS", "MODELS", "SEED_LABELS", "SEED_TABLE", "audit_images",
           "compose_grid", "differences", "labelled", "observations", "quote_command", "report_markdown",
           "side_by_side", "subject_grid", "write_command", "write_results"]
