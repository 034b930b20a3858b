"""Evaluate checkpoints on a dataset's test split, per lighting level: the paper's results table.

For every test subject, input view and lighting level, the dataset's RGBA render (alpha = mask) is
reconstructed by every model (``backend.recon.reconstruct``), brought back into the GT's canonical
space (:mod:`.framing`) and scored against the subject's GT mesh:

* PATD / PIPATD (``texture_distance``, k reported) and their medians / 90th percentiles, in both
  flavours: against the GT's vertices (the paper's protocol) and against dense GT surface samples
  (``*_dense``, ``dense_samples`` of them);
* geometry (``geometry_metrics``: Chamfer, both point-to-surface directions, normal consistency), in
  canonical units and in cm when the subject's source unit can be told from its height;
* image space: the reconstruction rendered unlit by Blender from the input view and ``novel_views``
  other dataset cameras, against the dataset's albedo renders (PSNR, SSIM, LPIPS when available).

Models whose geometry nets are identical (colour fine-tunes of one baseline) share one reconstruction
per input image: the first model of the group reconstructs, the others only re-query colours at the
same vertices (:func:`color_vertices`), and geometry metrics are computed once per group. All renders of
a group run in one Blender process.

With ``out_dir`` the evaluation is resumable: ``evaluation.json`` is rewritten after every input image,
and a later call with the same settings skips what it holds (render meshes wait under
``out_dir/.work`` until their images are done).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from avatex_core.progress import NULL, Progress
from backend.data.dataset import Dataset

# The parts, re-exported: callers import them from here and from the package.
from backend.evaluation.execute import cm_per_unit_for, color_vertices, execute  # noqa: F401
from backend.evaluation.plan import (  # noqa: F401
    DEFAULT_VIEWS,
    GEOMETRY_SAMPLES,
    TEXTURE_GT_SAMPLES,
    EvalConfig,
    EvalPlan,
    plan,
)
from backend.evaluation.result import FORMAT, FORMAT_VERSION, SUMMARY_KEYS, Evaluation, load_evaluation  # noqa: F401


def evaluate_runs(models: Mapping[str, str | Path], data: str | Path | Dataset, *,
                  progress: Progress = NULL, **options: Any) -> Evaluation:
    """Evaluate checkpoints on a dataset split per lighting level (module docstring).

    ``models``: display name -> checkpoint file or run folder (its last checkpoint); ``options``: the
    fields of :class:`EvalConfig`. Progress stages: ``load``, ``reconstruct``, ``render``, ``done``;
    cancelling ``progress`` stops between steps (CancelledError). ``plan`` then ``execute``.
    """
    return execute(plan(models, data, EvalConfig(**options)), progress)
