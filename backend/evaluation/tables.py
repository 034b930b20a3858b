"""The evaluation's results table: the paper's layout (metric x level rows, one column per model), extended.

The first rows are exactly ``backend.metrics.table``'s (PATD then PIPATD, per level, lowest in bold;
then the dense flavour's, with the same note under the table saying what each is measured against);
geometry and image-space rows follow, each bolded in its own direction (lower Chamfer, higher PSNR).
A row appears only when some model has a value for it. Markdown rounds (the bold is decided after
rounding, ties included, a lone value is not bolded); CSV keeps full precision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from backend.errors import InputError
from backend.metrics.table import LEVELS, METRIC_LABELS, Metric, csv_table, markdown_table, write_pair

METRICS: tuple[Metric, ...] = (
    Metric("patd", METRIC_LABELS["patd"]),
    Metric("pipatd", METRIC_LABELS["pipatd"]),
    Metric("patd_dense", METRIC_LABELS["patd_dense"]),
    Metric("pipatd_dense", METRIC_LABELS["pipatd_dense"]),
    Metric("chamfer_cm", "Chamfer (cm)"),
    Metric("pred_to_gt_cm", "pred → GT surface (cm)"),
    Metric("gt_to_pred_cm", "GT → pred surface (cm)"),
    Metric("chamfer", "Chamfer", decimals=4),
    Metric("pred_to_gt", "pred → GT surface", decimals=4),
    Metric("gt_to_pred", "GT → pred surface", decimals=4),
    Metric("normal_consistency", "Normal consistency", lower_is_better=False, decimals=3),
    Metric("psnr_input", "PSNR input view (dB)", lower_is_better=False),
    Metric("ssim_input", "SSIM input view", lower_is_better=False, decimals=3),
    Metric("psnr_novel", "PSNR novel views (dB)", lower_is_better=False),
    Metric("ssim_novel", "SSIM novel views", lower_is_better=False, decimals=3),
    Metric("lpips_input", "LPIPS input view", decimals=3),
    Metric("lpips_novel", "LPIPS novel views", decimals=3),
)
"""Rows in order. Geometry in canonical units is shown only where no model has it in cm."""

Results = Mapping[str, Mapping[str, Mapping[str, float | None]]]


def _levels(results: Results, levels: Sequence[str] | None) -> list[str]:
    if levels is not None:
        return list(levels)
    seen = {lvl for per_level in results.values() for lvl in per_level}
    return [lvl for lvl in LEVELS if lvl in seen] + sorted(seen - set(LEVELS))


def _value(results: Results, model: str, level: str, key: str) -> float | None:
    v = results[model].get(level, {}).get(key)
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def rows(results: Results, levels: Sequence[str] | None = None
         ) -> tuple[list[str], list[tuple[Metric, str, list[float | None]]]]:
    """(models, [(metric, level, value per model)]) for the metrics some model has."""
    if not results:
        raise InputError("no results to tabulate")
    models = list(results)
    levels = _levels(results, levels)
    present = {m.key for m in METRICS
               if any(_value(results, model, lv, m.key) is not None for model in models for lv in levels)}
    out = []
    for metric in METRICS:
        if metric.key not in present:
            continue
        if metric.key in ("chamfer", "pred_to_gt", "gt_to_pred") and f"{metric.key}_cm" in present:
            continue
        for level in levels:
            out.append((metric, level, [_value(results, model, level, metric.key) for model in models]))
    return models, out


def to_markdown(results: Results, levels: Sequence[str] | None = None,
                dense_samples: int | None = None) -> str:
    """Markdown rows (module docstring); ``dense_samples`` is the N the flavour note states."""
    return markdown_table(*rows(results, levels), dense_samples)


def to_csv(results: Results, levels: Sequence[str] | None = None) -> str:
    return csv_table(*rows(results, levels))


def write_tables(results: Results, out_stem: str | Path, levels: Sequence[str] | None = None,
                 dense_samples: int | None = None) -> tuple[Path, Path]:
    """``<stem>.md`` and ``<stem>.csv``, atomically (a .md/.csv suffix on the stem is dropped)."""
    return write_pair(out_stem, to_markdown(results, levels, dense_samples), to_csv(results, levels))
