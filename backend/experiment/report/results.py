"""Writing the results folder: tables, metrics, plots, image grids and the report (package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from avatex_core.atomic import write_text
from avatex_core.progress import NULL, Progress
from backend.experiment.report.grids import subject_grid
from backend.experiment.report.prose import LABELS, LEVELS, SEED_TABLE, labelled, report_markdown


def write_results(results: Path, evaluation, *, run: Path, data_root: Path, budget, seed: int,
                  source: dict, train_dirs: Mapping[str, Path], timings: Mapping[str, Any],
                  command: str | None, machine_info: Mapping[str, Any], report_subjects: int = 1,
                  report_view: int = 0, size: int = 320,
                  progress: Progress = NULL) -> Path:
    """Write everything in ``results`` (module docstring) and return the report's path."""
    from backend.data.dataset import Dataset
    from backend.evaluation import tables as eval_tables
    from backend.experiment import plots
    from backend.metrics.table import write_tables

    results.mkdir(parents=True, exist_ok=True)
    table = evaluation.table
    levels = [lv for lv in LEVELS if lv in evaluation.levels]
    levels += [lv for lv in evaluation.levels if lv not in LEVELS]
    write_tables(labelled(table), results / "table", levels=levels)
    eval_tables.write_tables(labelled(table), results / "metrics", levels)
    evaluation.to_json(results / "evaluation.json")
    plot_files = {
        "curves": plots.loss_curves(results / "plots" / "training.png", train_dirs, LABELS),
        "bars": plots.level_bars(results / "plots" / "levels.png", table, LABELS, SEED_TABLE, levels),
    }
    ds = Dataset(data_root)
    test = sorted(ds.split("test"))[:max(1, report_subjects)]
    view = report_view if report_view in ds.views_of(test[0]) else ds.views_of(test[0])[0]
    work = run / "report_work"
    work.mkdir(parents=True, exist_ok=True)
    grids = []
    for i, sid in enumerate(test):
        progress.report("subject", i / len(test), subject=sid)
        grids.append(subject_grid(evaluation, ds, sid, view, levels, work, results / "images" / f"{sid}.png",
                                  size=size, eval_dir=run / "eval"))
    text = report_markdown(evaluation, table, levels, budget=budget, seed=seed, source=source, ds=ds,
                           grids=[g.relative_to(results) for g in grids], view=view,
                           plots={k: v.relative_to(results) for k, v in plot_files.items()},
                           timings=timings, train_dirs=train_dirs)
    write_text(results / "report.md", text)
    return results / "report.md"
