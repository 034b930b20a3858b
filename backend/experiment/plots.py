"""The experiment's two figures: training curves of the runs, and per-level bars of PATD / PIPATD beside
the paper's. matplotlib with the Agg backend (no display needed); files are written atomically."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from avatex_core.atomic import atomic_path
from avatex_core.lighting import PAPER_LEVELS

COLORS = {"baseline": "#7f7f7f", "l1": "#1f77b4", "ssim": "#d62728", "geometry": "#2ca02c"}
LEVEL_ORDER = PAPER_LEVELS


def _history(run: Path) -> dict:
    path = Path(run) / "history.json"
    if not path.is_file():
        return {"train": [], "val": []}
    return json.loads(path.read_text(encoding="utf-8"))


def _ordered(levels: Sequence[str]) -> list[str]:
    """The paper's levels first, in its order, then any others as given."""
    return [lv for lv in LEVEL_ORDER if lv in levels] + [lv for lv in levels if lv not in LEVEL_ORDER]


def _label_axes(ax, x, levels: Sequence[str], title: str, legend_size: int, **legend) -> None:
    ax.set_xticks(x, levels)
    ax.set_title(title)
    ax.set_ylabel("ΔE00 (lower is better)")
    ax.legend(fontsize=legend_size, **legend)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def loss_curves(path: Path, runs: Mapping[str, Path], labels: Mapping[str, str]) -> Path:
    """Three panels: the geometry run's occupancy loss; the colour loss of the baseline and of both
    fine-tunes (steps continue after the baseline's, so the fine-tunes start where it ended); and the
    validation PATD (held-out subjects' GT vertices, all levels) of the colour runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    geo = _history(runs["geometry"]) if "geometry" in runs else {"train": []}
    rows = [r for r in geo["train"] if "occupancy" in r]
    axes[0].plot([r["step"] for r in rows], [r["occupancy"] for r in rows], color=COLORS["geometry"])
    axes[0].set_title("geometry stage (clear renders): occupancy loss")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("MSE over stacks")
    offset = 0
    base = _history(runs["baseline"]) if "baseline" in runs else {"train": [], "val": []}
    if base["train"]:
        offset = max(r["step"] for r in base["train"])
    for name in ("baseline", "l1", "ssim"):
        if name not in runs:
            continue
        hist = base if name == "baseline" else _history(runs[name])
        shift = 0 if name == "baseline" else offset
        rows = [r for r in hist["train"] if "color" in r]
        label = labels.get(name, name)
        if name == "ssim" and rows and "ssim" in rows[0] and "l1" not in rows[0]:
            label += " (1 - SSIM)"
        axes[1].plot([r["step"] + shift for r in rows], [r["color"] for r in rows], color=COLORS[name],
                     label=label, lw=1.2)
        val = [r for r in hist.get("val", []) if "patd" in r]
        axes[2].plot([r["step"] + shift for r in val], [r["patd"] for r in val], "o-", color=COLORS[name],
                     label=labels.get(name, name), ms=3)
    if offset:
        for ax in axes[1:]:
            ax.axvline(offset, color="k", lw=0.6, ls=":")
    axes[1].set_title("colour loss (baseline: clear; fine-tunes: all levels)")
    axes[1].set_xlabel("step (fine-tunes continue the baseline)")
    axes[1].legend(fontsize=8)
    axes[2].set_title("validation PATD (held-out GT vertices, all levels)")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("ΔE00")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def level_bars(path: Path, table: Mapping[str, Mapping[str, Mapping[str, float | None]]],
               labels: Mapping[str, str], seed_table: Mapping[str, Mapping[str, Mapping[str, float]]],
               levels: Sequence[str]) -> Path:
    """2 x 2 panels: PATD and PIPATD per level and model, this run (top) and the paper's table (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    levels = _ordered(levels)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharey="col")
    for col, metric in enumerate(("patd", "pipatd")):
        panels = (("this run", table), ("seed (2K2K, pretrained PIFu)", seed_table))
        for row, (title, data) in enumerate(panels):
            ax = axes[row, col]
            models = [m for m in ("baseline", "l1", "ssim") if m in data]
            width = 0.8 / max(1, len(models))
            x = np.arange(len(levels))
            for i, m in enumerate(models):
                vals = [data[m].get(lv, {}).get(metric) for lv in levels]
                vals = [np.nan if v is None else float(v) for v in vals]
                bars = ax.bar(x + (i - (len(models) - 1) / 2) * width, vals, width, color=COLORS[m],
                              label=labels.get(m, m))
                ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
            _label_axes(ax, x, levels, f"{metric.upper()} - {title}", 8)
    fig.tight_layout()
    return _save(fig, path)


def interval_bars(path: Path, cells: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float] | None]]],
                  labels: Mapping[str, str], levels: Sequence[str], metrics: Sequence[str]) -> Path:
    """One panel per metric: per level and model, the mean over test persons with its 95 % interval as
    an error bar (the protocol's cells, ``{metric: {model: {level: {mean, low, high}}}}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    levels = _ordered(levels)
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.4), squeeze=False)
    palette = plt.get_cmap("tab10")
    for ax, metric in zip(axes[0], metrics, strict=True):
        models = list(cells[metric])
        width = 0.8 / max(1, len(models))
        x = np.arange(len(levels))
        top = 0.0
        for i, m in enumerate(models):
            got = [cells[metric][m].get(lv) for lv in levels]
            mean = np.array([np.nan if c is None else c["mean"] for c in got])
            low = np.array([np.nan if c is None else c["mean"] - c["low"] for c in got])
            high = np.array([np.nan if c is None else c["high"] - c["mean"] for c in got])
            ax.bar(x + (i - (len(models) - 1) / 2) * width, mean, width, yerr=[low, high], capsize=2,
                   color=palette(i), label=labels.get(m, m))
            top = max(top, float(np.nanmax(mean + high, initial=0.0)))
        ax.set_ylim(0.0, top * 1.3 if top > 0 else None)  # headroom: the legend must not cover a bar
        _label_axes(ax, x, levels, f"{metric}: mean over test persons, 95 % interval", 7, ncol=2,
                    loc="upper center")
    fig.tight_layout()
    return _save(fig, path)
