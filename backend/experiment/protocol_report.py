"""The protocol's numbers and words: per-subject values out of the evaluations, cells with intervals,
paired differences with a verdict, the choice made on validation, and ``results/protocol.md``.

Geometry metrics are the same for all six models of a seed (they share netG bit for bit), so they are
reported once per seed group, under the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avatex_core.atomic import write_json, write_text
from backend.experiment import stats
from backend.experiment.protocol_budgets import COLUMN_LABELS, COLUMNS, ProtocolBudget

PRIMARY = ("patd_dense", "pipatd_dense")
VERTEX = ("patd", "pipatd")
DIAGNOSTIC = ("patd_color_only",)
"""The colour net queried at the GT surface: its own colour error, geometry left out."""
GEOMETRY = ("chamfer_cm", "pred_to_gt_cm", "normal_consistency")
IMAGE = ("psnr_input", "psnr_novel", "ssim_input", "ssim_novel", "lpips_input", "lpips_novel")
"""Unlit Blender renders of each reconstruction against the GT albedo render, at the input view and
at novel views (budgets with image metrics only; validation never computes them)."""
METRICS = PRIMARY + VERTEX + DIAGNOSTIC + GEOMETRY + IMAGE
HIGHER_IS_BETTER = {"normal_consistency", "psnr_input", "psnr_novel", "ssim_input", "ssim_novel"}
PAIRS = (("ssim_local", "l1"), ("ssim_seed", "l1"), ("l1_ssim", "l1"), ("l1", "baseline"),
         ("l1_ssim", "baseline"), ("l1", "control"), ("l1_ssim", "control"), ("control", "baseline"))
"""Paired differences the report states: SSIM − L1, fine-tune − baseline, fine-tune − the compute-matched
control (more training on B without relighting), control − baseline."""
CHOICE_CANDIDATES = ("l1", "ssim_seed", "ssim_local", "l1_ssim")


def collect(evaluations: Mapping[int, Any], *, levels: Sequence[str],
            groups: Mapping[str, str] | None = None, models: Sequence[str] = COLUMNS) -> dict[str, Any]:
    """``{"seeds", "subjects", "levels", "values": {metric: {model: {level: [[seed][unit]]}}}}``.

    An avatar's value is the mean over its evaluated views; with ``groups`` (avatar -> person group) the
    unit of resampling is the person group, the mean of its avatars: two outfits of one person are not
    two independent draws. A failed item makes the unit's value NaN, and such units are dropped per cell
    later (the cell's ``n`` says how many remained). A metric no item has (image metrics switched off)
    is left out.
    """
    present = {k for ev in evaluations.values() for r in ev.per_item for k, v in r.items() if v is not None}
    seeds = sorted(int(s) for s in evaluations)
    avatars = sorted({r["subject"] for ev in evaluations.values() for r in ev.per_item})
    unit_of = {a: (groups or {}).get(a, a) for a in avatars}
    units = sorted(set(unit_of.values()))
    values: dict[str, dict[str, dict[str, list[list[float]]]]] = {}
    for metric in (m for m in METRICS if m in present):
        values[metric] = {}
        for model in models:
            values[metric][model] = {}
            for level in levels:
                rows = []
                for s in seeds:
                    per_avatar = {}
                    for sid in avatars:
                        vals = [r.get(metric) for r in evaluations[s].per_item
                                if r["model"] == model and r["level"] == level and r["subject"] == sid]
                        ok = [float(v) for v in vals if isinstance(v, int | float) and math.isfinite(v)]
                        per_avatar[sid] = float(np.mean(ok)) if ok and len(ok) == len(vals) else float("nan")
                    rows.append([float(np.mean([per_avatar[a] for a in avatars if unit_of[a] == u]))
                                 for u in units])
                values[metric][model][level] = rows
    return {"seeds": seeds, "subjects": units, "avatars": avatars, "levels": list(levels), "values": values}


def _complete(*matrices: np.ndarray) -> list[np.ndarray]:
    keep = np.all([np.all(np.isfinite(m), axis=0) for m in matrices], axis=0)
    return [m[:, keep] for m in matrices]


def cell(collected: Mapping[str, Any], metric: str, model: str, level: str) -> stats.Interval | None:
    if metric not in collected["values"]:
        return None
    (m,) = _complete(np.asarray(collected["values"][metric][model][level], dtype=np.float64))
    return stats.cell_interval(m) if m.size else None


def difference(collected: Mapping[str, Any], metric: str, a: str, b: str, level: str
               ) -> stats.Interval | None:
    if metric not in collected["values"]:
        return None
    v = collected["values"][metric]
    ma, mb = _complete(np.asarray(v[a][level], dtype=np.float64), np.asarray(v[b][level], dtype=np.float64))
    return stats.paired_interval(ma, mb) if ma.size else None


def choose_on_validation(collected: Mapping[str, Any], metric: str = "patd_dense") -> dict[str, Any]:
    """The fine-tune recipe with the lowest mean ``metric`` over levels and seeds, on validation only."""
    means = {}
    for m in CHOICE_CANDIDATES:
        cells = [cell(collected, metric, m, lv) for lv in collected["levels"]]
        cells = [c for c in cells if c is not None]
        if cells:
            means[m] = float(np.mean([c.mean for c in cells]))
    best = min(means, key=means.get) if means else None
    return {"metric": metric, "split": "validation", "means": means, "best": best}


def _fmt(iv: stats.Interval | None, digits: int = 2) -> str:
    return "–" if iv is None else iv.text(digits)


def cell_table(collected: Mapping[str, Any], metric: str, models: Sequence[str] = COLUMNS) -> str:
    levels = collected["levels"]
    lines = ["| model | " + " | ".join(levels) + " |", "|---" * (len(levels) + 1) + "|"]
    for m in models:
        lines.append(f"| {COLUMN_LABELS[m]} | " + " | ".join(_fmt(cell(collected, metric, m, lv))
                                                             for lv in levels) + " |")
    return "\n".join(lines) + "\n"


def difference_rows(collected: Mapping[str, Any], metrics: Sequence[str] = PRIMARY) -> list[dict[str, Any]]:
    out = []
    for metric in metrics:
        for a, b in PAIRS:
            for lv in collected["levels"]:
                d = difference(collected, metric, a, b, lv)
                if d is not None:
                    out.append({"metric": metric, "a": a, "b": b, "level": lv, **d.to_dict(),
                                "within_noise": d.within_noise,
                                "words": stats.verdict(d, metric not in HIGHER_IS_BETTER,
                                                       (COLUMN_LABELS[a], COLUMN_LABELS[b]))})
    return out


def write_report(results: Path, *, test_cells: Mapping[str, Any], val_cells: Mapping[str, Any],
                 choice: Mapping[str, Any], record: Mapping[str, Any], budget: ProtocolBudget,
                 seeds: Sequence[int], levels: Sequence[str], spec: Mapping[str, Any],
                 timings: Mapping[str, float], command: str | None, figures: Sequence[Path] = (),
                 figure_seed: int | None = None) -> dict[str, Path]:
    """``protocol.md`` and ``protocol.json`` (cells, differences, choice, split sizes) in ``results``;
    ``figures``: side-by-side images (in ``results``) of test avatars by the models of ``figure_seed``."""
    results.mkdir(parents=True, exist_ok=True)
    diffs = difference_rows(test_cells)
    cells_json = {metric: {m: {lv: (lambda c: c.to_dict() if c else None)(cell(test_cells, metric, m, lv))
                               for lv in levels} for m in COLUMNS} for metric in METRICS}
    from backend.experiment.plots import interval_bars

    plot = interval_bars(results / "protocol_levels.png", cells_json, COLUMN_LABELS, levels, PRIMARY)
    write_json(results / "protocol.json", {"budget": budget.name, "seeds": list(seeds), "cells": cells_json,
                                           "differences": diffs, "validation_choice": dict(choice),
                                           "values": test_cells, "timings": dict(timings)})
    split_lines = []
    for s in ("train", "val", "test"):
        rows = record["splits"][s]
        names = sorted({r["group"] for r in rows})
        split_lines.append(f"  - **{s}**: {len(rows)} avatars, {len(names)} person groups "
                           f"({', '.join(names)})")
    a = spec["population_a"]
    a_text = (f"{len(a['paths'])} meshes given with --population-a" if a["kind"] == "meshes"
              else f"{a['subjects']} anny avatars with painted clothes (`avatex synth --seed {a['seed']}`)")
    n_test, n_avatars = len(test_cells["subjects"]), len(test_cells.get("avatars", test_cells["subjects"]))
    text = [f"# Protocol run: budget `{budget.name}`, seeds {', '.join(map(str, seeds))}", ""]
    if budget.name == "test":
        text += ["**Smoke run.** Micro nets trained for a handful of steps: these numbers show that the "
                 "protocol runs end to end on real data; they say nothing about the losses.", ""]
    text += [f"Command: `{command or 'avatex protocol ...'}`", "",
             "## Populations and split", "",
             f"- A (pretraining, lit {', '.join(budget.a_levels)}): {a_text}.",
             f"- B (fine-tuning and evaluation): `{spec['population_b']}`, split by person group "
             f"(seed {record['seed']}):", *split_lines, "",
             f"Every cell: mean over {n_test} test persons ({n_avatars} avatars; a person's value is the "
             f"mean of its avatars, views and {len(seeds)} training seeds) and the 95 % bootstrap interval "
             "over test persons. With few persons the intervals are wide; with one they collapse to the "
             "value and carry no information.", "",
             *([f"**Caution: {n_test} test persons.** A percentile bootstrap over so few persons is too "
                "narrow: an interval that excludes 0 is not by itself evidence of a difference. Each paired "
                "difference therefore also carries an exact sign-flip test over the persons (p, smallest "
                f"possible {2 / 2 ** n_test:.3f}), and is called within noise unless both the interval "
                "excludes 0 and p < 0.05.", ""] if n_test < 8 else []),
             f"![per-level cells with 95 % intervals]({plot.name})", "",
             "## Dense-surface PATD (ΔE00, primary)", "", cell_table(test_cells, "patd_dense"),
             "## Dense-surface PIPATD (primary)", "", cell_table(test_cells, "pipatd_dense"),
             "## Vertex PATD (the paper's flavour)", "", cell_table(test_cells, "patd"),
             "## Vertex PIPATD", "", cell_table(test_cells, "pipatd"),
             "## Colour-only PATD (diagnostic: the colour net queried at the GT surface)", "",
             cell_table(test_cells, "patd_color_only"),
             "## Geometry (shared netG: one value per seed group)", ""]
    for metric in GEOMETRY:
        text += [f"{metric}:", "", cell_table(test_cells, metric, ("baseline",))]
    image_metrics = [m for m in IMAGE if any(cell(test_cells, m, c, lv) for c in COLUMNS for lv in levels)]
    if image_metrics:
        text += ["## Image metrics (unlit renders of the reconstruction vs the GT albedo render)", "",
                 "`input`: the input view; `novel`: views the model did not see (budget's novel views). "
                 "LPIPS appears only where its weights are installed.", ""]
        for metric in image_metrics:
            text += [f"{metric}:", "", cell_table(test_cells, metric)]
    if figures:
        text += ["## Side-by-side reconstructions (test avatars)", "",
                 f"Models of seed {figure_seed}; rows: lighting levels of the input; columns: the input, the "
                 "GT albedo render, the reconstructions (Baseline, Fine-tuned L1, SSIM-only with the paper's "
                 "statistics, L1 + local SSIM), then their per-vertex PATD heatmaps (fixed ΔE00 scale; the "
                 "caption gives the item's vertex PATD). The avatars were chosen by name (first, middle, "
                 "last of the sorted test split), not by their numbers.", ""]
        text += [f"![{Path(f).stem}]({Path(f).relative_to(results).as_posix()})\n" for f in figures]
    text += ["## Paired differences (test)", "",
             "Per test person a − b, then bootstrapped over persons; negative = a has the lower (better) "
             "error. *a lower on*: the persons on which a − b < 0. *p*: the exact two-sided sign-flip test "
             "over persons (`backend/experiment/stats.py`). Within noise: the interval holds 0 or p ≥ 0.05.",
             "",
             "| metric | a − b | level | difference [95 % CI] | a lower on | p | within noise |",
             "|---|---|---|---|---|---|---|"]
    for d in diffs:
        text.append(f"| {d['metric']} | {COLUMN_LABELS[d['a']]} − {COLUMN_LABELS[d['b']]} | {d['level']} | "
                    f"{d['mean']:.2f} [{d['low']:.2f}, {d['high']:.2f}] | {d['wins']} of {d['n']} | "
                    f"{d['p']:.3f} | {'yes' if d['within_noise'] else 'no'} |")
    noise = [d for d in diffs if d["within_noise"]]
    text += ["", f"In words: {len(noise)} of {len(diffs)} differences are within noise"
             + ("" if not noise else ": " + "; ".join(f"{d['words']} ({d['metric']}, {d['level']})"
                                                      for d in noise)) + ". "
             + " ".join(f"{d['words']} ({d['metric']}, {d['level']})." for d in diffs
                        if not d["within_noise"]), "",
             "## Choice made on validation", "",
             f"The recipe with the lowest validation {choice['metric']} (mean over levels and seeds): "
             f"**{COLUMN_LABELS.get(choice['best'], choice['best'])}** "
             f"({', '.join(f'{COLUMN_LABELS[k]} {v:.2f}' for k, v in choice['means'].items())}). "
             "The test split was evaluated once, after every training run, by the report stage.", "",
             "## Wall time (s)", "", ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), ""]
    write_text(results / "protocol.md", "\n".join(text))
    return {"report": results / "protocol.md", "json": results / "protocol.json", "plot": plot}
