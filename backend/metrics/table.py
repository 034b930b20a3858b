"""The paper's results table: PATD/PIPATD per lighting level (rows) for several models (columns).

Input is ``{model: {level: {"patd": x, "pipatd": y}}}`` (e.g. the mean of each test item's summary
per lighting level), optionally with the dense flavour's ``patd_dense`` / ``pipatd_dense``: their rows
("PATD dense", "PIPATD dense") follow when some model has them, and the Markdown then ends with a note
saying what each flavour is measured against. Markdown puts the best (lowest) value of each row in
bold; CSV carries the raw numbers. Missing values are shown as "–" (Markdown) or left empty (CSV).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from avatex_core.atomic import write_text
from avatex_core.lighting import PAPER_LEVELS
from backend.errors import InputError

LEVELS = PAPER_LEVELS
METRICS = ("patd", "pipatd", "patd_dense", "pipatd_dense")
METRIC_LABELS = {"patd": "PATD", "pipatd": "PIPATD", "patd_dense": "PATD dense",
                 "pipatd_dense": "PIPATD dense"}
OPTIONAL = ("patd_dense", "pipatd_dense")
"""Metrics whose rows are left out when no model has a value for them."""


def flavour_note(dense_samples: int | None = None) -> str:
    """The line under a table with dense rows: what PATD and PATD dense are measured against."""
    n = f"{int(dense_samples):,} " if dense_samples else ""
    return ("PATD, PIPATD: against the GT's vertices (the paper's protocol). PATD dense, PIPATD dense: "
            f"against {n}area-uniform GT surface samples with interpolated colours.")

Results = Mapping[str, Mapping[str, Mapping[str, float]]]


Row = tuple[str, str, list[float | None]]


def table_rows(results: Results, levels: Sequence[str] | None = None,
               metrics: Sequence[str] = METRICS) -> tuple[list[str], list[Row]]:
    """(models, rows) with rows = [(metric, level, [value per model or None])], metric-major."""
    if not results:
        raise InputError("no results to tabulate")
    models = list(results)
    if levels is None:
        seen = {lvl for per_level in results.values() for lvl in per_level}
        levels = [lvl for lvl in LEVELS if lvl in seen] + sorted(seen - set(LEVELS))
    rows = []
    for metric in metrics:
        if metric in OPTIONAL and not any(results[m].get(lv, {}).get(metric) is not None
                                          for m in models for lv in levels):
            continue
        for level in levels:
            values = []
            for model in models:
                value = results[model].get(level, {}).get(metric)
                if value is not None:
                    value = float(value)
                    if not math.isfinite(value):
                        raise InputError(f"{model} / {level} / {metric} is not a finite number: {value}")
                values.append(value)
            rows.append((metric, level, values))
    return models, rows


@dataclass(frozen=True)
class Metric:
    """One row kind of a table: its key in the results, label, direction and Markdown decimals."""

    key: str
    label: str
    lower_is_better: bool = True
    decimals: int = 2


MetricRow = tuple[Metric, str, list[float | None]]


def _metric(key: str, decimals: int) -> Metric:
    return Metric(key, METRIC_LABELS.get(key, key), decimals=decimals)


def to_markdown(results: Results, levels: Sequence[str] | None = None, metrics: Sequence[str] = METRICS,
                decimals: int = 2, dense_samples: int | None = None) -> str:
    """GitHub Markdown table; the lowest value of each row (after rounding, ties included) is bold.

    With dense rows, a note follows naming each flavour (``dense_samples``: their N, when known)."""
    models, rows = table_rows(results, levels, metrics)
    return markdown_table(models, [(_metric(m, decimals), lv, v) for m, lv, v in rows], dense_samples)


def to_csv(results: Results, levels: Sequence[str] | None = None, metrics: Sequence[str] = METRICS) -> str:
    """CSV with columns metric, level, then one per model; full precision, empty cells for missing."""
    models, rows = table_rows(results, levels, metrics)
    return csv_table(models, [(_metric(m, 2), lv, v) for m, lv, v in rows])


def write_tables(results: Results, out_stem: str | Path, levels: Sequence[str] | None = None,
                 decimals: int = 2, dense_samples: int | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.csv`` atomically (a .md/.csv suffix on the stem is dropped)."""
    return write_pair(out_stem, to_markdown(results, levels, decimals=decimals, dense_samples=dense_samples),
                      to_csv(results, levels))


# ------------------------------------------------- the writer (this table and the evaluation's)

def markdown_table(models: Sequence[str], rows: Sequence[MetricRow], dense_samples: int | None = None
                   ) -> str:
    """Markdown of metric x level rows, one column per model; each row's best value (in its metric's
    direction, after rounding, ties included; a lone value is not) in bold; "–" for missing; the flavour
    note under it when a dense row is present."""
    lines = ["| metric | level | " + " | ".join(str(m).replace("|", "\\|") for m in models) + " |",
             "|---|---|" + "---:|" * len(models)]
    for metric, level, values in rows:
        shown = [None if v is None else round(v, metric.decimals) for v in values]
        present = [v for v in shown if v is not None]
        best = (min(present) if metric.lower_is_better else max(present)) if present else None
        cells = []
        for v in shown:
            if v is None:
                cells.append("–")
                continue
            text = f"{v:.{metric.decimals}f}"
            cells.append(f"**{text}**" if v == best and len(present) > 1 else text)
        lines.append(f"| {metric.label} | {level} | " + " | ".join(cells) + " |")
    if any(metric.key in OPTIONAL for metric, _, _ in rows):
        lines += ["", flavour_note(dense_samples)]
    return "\n".join(lines) + "\n"


def csv_table(models: Sequence[str], rows: Sequence[MetricRow]) -> str:
    """CSV of the same rows: columns metric, level, then one per model; full precision, empty = missing."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["metric", "level", *models])
    for metric, level, values in rows:
        writer.writerow([metric.label, level, *("" if v is None else repr(v) for v in values)])
    return buf.getvalue()


def write_pair(out_stem: str | Path, markdown: str, csv_text: str) -> tuple[Path, Path]:
    """``<stem>.md`` and ``<stem>.csv``, atomically (a .md/.csv suffix on the stem is dropped)."""
    stem = Path(out_stem)
    if stem.suffix.lower() in (".md", ".csv"):
        stem = stem.with_suffix("")
    md, csv_path = stem.parent / f"{stem.name}.md", stem.parent / f"{stem.name}.csv"
    write_text(md, markdown)
    write_text(csv_path, csv_text)
    return md, csv_path
