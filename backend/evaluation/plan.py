"""What an evaluation computes (:class:`EvalConfig`, :class:`EvalPlan`, :func:`plan`): the options
checked against the dataset's records and the work listed, before any model or GT is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backend.data.dataset import Dataset
from backend.errors import InputError
from backend.metrics.patd import DEFAULT_GT_SAMPLES

DEFAULT_VIEWS = (0,)
"""Input views per test subject when none are given: view 0, the frontal camera (yaw 0)."""
TEXTURE_GT_SAMPLES = DEFAULT_GT_SAMPLES
"""Surface samples of the dense PATD flavour, drawn once per subject."""

GEOMETRY_SAMPLES = 20_000
"""Surface samples per mesh for the geometry metrics: a fifth of ``avatex evaluate``'s default, so that a
table over many items stays affordable on a CPU (means move by well under 1 % between the two)."""


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate: every option of :func:`evaluate_runs` (module docstring; docs/metrics.md).

    ``views``: input view indices per subject (default ``[0]``, the frontal view); subjects lacking one
    are skipped for it. ``levels``: default all of the dataset's. ``resolution``: reconstruction grid.
    ``k``: PIPATD's neighbours. ``novel_views``: other dataset views rendered besides the input view.
    ``geometry_samples``: surface samples per mesh for the geometry metrics. ``gt_samples``: surface
    samples of the dense PATD flavour (default 500k); the paper's flavour uses the GT's vertices.
    ``render_samples``: Cycles samples (default: the dataset's albedo samples). ``blender``: a Blender
    executable for the renders (default: this Python's bpy). ``out_dir`` makes the run resumable.
    ``subjects``: only these subjects of the split (default all), for figures of a few.
    """

    split: str = "test"
    levels: list[str] | None = None
    views: list[int] | None = None
    resolution: int = 256
    k: int = 8
    device: str | torch.device | None = None
    image_metrics: bool = True
    novel_views: int = 4
    out_dir: str | Path | None = None
    keep_meshes: bool = False
    geometry_samples: int = GEOMETRY_SAMPLES
    gt_samples: int | None = None
    render_samples: int | None = None
    blender: str | None = None
    lpips: bool = True
    subjects: list[str] | None = None

    def validate(self) -> None:
        """Raise :class:`InputError` for an option no dataset could satisfy."""
        if not isinstance(self.resolution, int) or self.resolution < 8:
            raise InputError(f"resolution must be an integer >= 8, got {self.resolution!r}")
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise InputError(f"k must be a positive integer, got {self.k!r}")
        if self.novel_views < 0:
            raise InputError(f"novel_views must be >= 0, got {self.novel_views}")


@dataclass(frozen=True)
class EvalPlan:
    """What an evaluation computes, worked out from the options and the dataset's records alone.

    ``inputs``: every (subject, input view, level) to reconstruct, in order; ``skipped``: the requested
    inputs that are not rendered; ``settings``: what a resumed run must match.
    """

    models: dict[str, Path]
    dataset: Dataset
    config: EvalConfig
    levels: list[str]
    views: list[int]
    inputs: list[tuple[str, int, str]]
    skipped: list[dict[str, Any]]
    settings: dict[str, Any]


def plan(models: Mapping[str, str | Path], data: str | Path | Dataset, config: EvalConfig) -> EvalPlan:
    """Check the options against the dataset and list the work; loads no model and no GT."""
    if not models:
        raise InputError("no models to evaluate")
    config.validate()
    ds = data if isinstance(data, Dataset) else Dataset(data)
    subjects = ds.split(config.split)
    if not subjects:
        raise InputError(f"the dataset {ds.root} has no {config.split!r} subjects; render it with a test "
                         "share (avatex render --test-fraction F) or choose another split")
    if config.subjects is not None:
        missing = sorted(set(config.subjects) - set(subjects))
        if missing:
            raise InputError(f"subject(s) {missing} are not in the {config.split!r} split of {ds.root}")
        subjects = [sid for sid in subjects if sid in set(config.subjects)]
    levels = list(config.levels) if config.levels else list(ds.levels)
    unknown = [lv for lv in levels if lv not in ds.levels]
    if unknown:
        raise InputError(f"level(s) {unknown} are not in the dataset {ds.root} (it has {ds.levels})")
    view_list = [int(v) for v in (config.views if config.views is not None else DEFAULT_VIEWS)]
    known_views = {int(v["index"]) for v in ds.views}
    bad = [v for v in view_list if v not in known_views]
    if bad:
        raise InputError(f"view(s) {bad} are not in the dataset (views 0..{len(known_views) - 1})")
    inputs: list[tuple[str, int, str]] = []
    skipped: list[dict[str, Any]] = []
    for sid in subjects:
        finished = set(ds.views_of(sid))
        for v in view_list:
            if v not in finished:
                skipped.append({"subject": sid, "view": v, "reason": "view not rendered"})
                continue
            inputs.extend((sid, v, lv) for lv in levels)
    if not inputs:
        raise InputError(f"none of the {config.split} subjects has the input view(s) {view_list} rendered")
    settings = {"dataset": str(Path(ds.root).resolve()), "split": config.split, "levels": levels,
                "views": view_list, "resolution": config.resolution, "k": config.k,
                "image_metrics": bool(config.image_metrics), "novel_views": int(config.novel_views),
                "geometry_samples": int(config.geometry_samples), "gt_samples": config.gt_samples,
                "dense_samples": int(config.gt_samples or TEXTURE_GT_SAMPLES),
                "render_samples": config.render_samples or int(ds.settings.get("albedo_samples", 16)),
                "dataset_resolution": ds.resolution,
                **({"subjects": sorted(subjects)} if config.subjects is not None else {})}
    return EvalPlan(models={str(k): Path(v) for k, v in models.items()}, dataset=ds, config=config,
                    levels=levels, views=view_list, inputs=inputs, skipped=skipped, settings=settings)
