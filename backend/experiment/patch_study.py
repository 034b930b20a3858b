"""The patch-loss study: can the 3D patch-wise SSIM term be made to work, judged on validation only.

Each variant is the protocol's *L1 + local SSIM* fine-tune with one patch setting changed, trained for
every seed from that seed's baseline of a finished (or at least trained) ``avatex protocol`` run, for the
same steps, and scored on B's **validation** split (docs/experiment.md, "Patch-loss study"). The test
split is never read: the study only knows the B-dev dataset, whose "test" split is validation.

The variants test the reasons the loss may fail to help (docs/training.md):

* ``cell``: patches one colour-feature cell wide (``patch_spacing = cell / (k - 1)``; the default 4 cm
  patches lie inside one 6 cm cell at 128 px, so the net cannot vary its colour across them);
* ``cell2``: two cells wide;
* ``skip_flat``: flat GT patches (in-patch std < 0.02) left out of the SSIM term;
* ``lab``: SSIM computed in CIELAB;
* ``ssim_light`` / ``ssim_heavy``: the SSIM weight against L1 at 0.25 and 4 (1 in the column).

Each variant's training history also gives ``std_ratio``, predicted over GT in-patch standard deviation at
the end of training: whether the structure term is being learned at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avatex_core.atomic import write_json, write_text
from avatex_core.progress import NULL, Progress
from backend.errors import InputError
from backend.experiment import protocol_report as rep
from backend.experiment import stages
from backend.experiment.protocol_budgets import get_protocol_budget

REFERENCE = "l1_ssim"
"""The protocol column every variant changes one setting of (reused as trained, not retrained)."""
FLAT_STD = 0.02


def variants(feature_cell: float, patch_k: int) -> dict[str, dict[str, Any]]:
    """The study's variants: TrainConfig overrides of the reference fine-tune (module docstring)."""
    return {
        "cell": {"patch_spacing": feature_cell / (patch_k - 1)},
        "cell2": {"patch_spacing": 2 * feature_cell / (patch_k - 1)},
        "skip_flat": {"patch_min_std": FLAT_STD},
        "lab": {"ssim_space": "lab"},
        "ssim_light": {"w_ssim": 0.25},
        "ssim_heavy": {"w_ssim": 4.0},
    }


def feature_cell(checkpoint: Path) -> float:
    """Canonical units one colour-feature cell spans: the image's 2 units over the feature map's side."""
    from backend.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint, device="cpu")
    return 2.0 / model.config.feature_size


def run_study(run: str | Path, *, seeds: Sequence[int] | None = None, only: Sequence[str] | None = None,
              device: str | None = None, threads: int | None = None, progress: Progress = NULL,
              verbose: bool = True) -> dict[str, Any]:
    """Train and score the variants in ``RUN/study``; returns the summary also written to study.json."""
    import torch

    from backend.experiment.pipeline import default_threads
    from backend.experiment.protocol import _evaluate_models, record_names, training_configs

    root = Path(run).expanduser().resolve()
    spec_path, split_path = root / "protocol.json", root / "split.json"
    if not spec_path.is_file() or not split_path.is_file():
        raise InputError(f"{root} is not an avatex protocol run (no protocol.json / split.json); "
                         "run `avatex protocol` first")
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    record = json.loads(split_path.read_text(encoding="utf-8"))
    b = get_protocol_budget(spec["budget"]["name"])
    seeds = [int(s) for s in (seeds if seeds is not None else spec["seeds"])]
    data_a, data_b = root / "data" / "a", root / "data" / "b_dev"
    from backend.data.dataset import Dataset

    b_levels = list(Dataset(data_b).levels)
    a_levels = list(Dataset(data_a).levels)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads(device))
    timings: dict[str, float] = {}
    try:
        evaluations, histories, chosen_variants = {}, {}, None
        for seed in seeds:
            folder = root / f"seed_{seed}"
            configs = training_configs(b, data_a=data_a, data_b=data_b, data_test=root / "data" / "b_test",
                                       b_levels=b_levels, a_levels=a_levels, train_dir=folder / "train",
                                       seed=seed, device=device, progress_bar=verbose)
            base_steps = int(configs["baseline"]["steps"])
            baseline = stages.finished_checkpoint(Path(configs["baseline"]["out"]), base_steps)
            reference = stages.finished_checkpoint(Path(configs[REFERENCE]["out"]),
                                                   int(configs[REFERENCE]["steps"]))
            if baseline is None or reference is None:
                raise InputError(f"seed {seed} of {root} has no finished baseline and {REFERENCE} run yet; "
                                 "finish `avatex protocol` first (re-running it resumes)")
            table = variants(feature_cell(baseline), int(configs[REFERENCE].get("patch_k", 5)))
            chosen_variants = {k: v for k, v in table.items() if only is None or k in only}
            if only is not None and len(chosen_variants) != len(set(only)):
                raise InputError(f"unknown study variant in {list(only)}; choose from {', '.join(table)}")
            models = {REFERENCE: _export(reference, folder / "study" / "models" / f"{REFERENCE}.pt", seed)}
            histories[seed] = {REFERENCE: _history_tail(Path(configs[REFERENCE]["out"]))}
            for name, overrides in chosen_variants.items():
                progress.check(f"study stopped before {name} (seed {seed}); run it again to resume")
                cfg = {**configs[REFERENCE], **overrides, "out": str(folder / "study" / name),
                       "init": str(baseline)}
                t = time.monotonic()
                final, _ = stages.train_run(cfg)
                timings[f"train_{name}"] = round(timings.get(f"train_{name}", 0.0) + time.monotonic() - t, 1)
                models[name] = _export(final, folder / "study" / "models" / f"{name}.pt", seed)
                histories[seed][name] = _history_tail(Path(cfg["out"]))
            t = time.monotonic()
            evaluations[seed] = _evaluate_models(models, data_b, folder / "study" / "eval_val", b, b_levels,
                                                 device)
            timings["evaluate_val"] = round(timings.get("evaluate_val", 0.0) + time.monotonic() - t, 1)
        names = [REFERENCE, *(chosen_variants or {})]
        groups = {row["avatar"]: row["group"] for rows in record["splits"].values() for row in rows}
        cells = rep.collect(evaluations, levels=b_levels, groups=groups, models=names)
        summary = summarise(cells, histories, chosen_variants or {}, names)
        summary.update(run=str(root), budget=b.name, seeds=seeds, split="validation",
                       validation_avatars=record_names(record, "val"), timings=timings)
        out = root / "study"
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "study.json", summary)
        write_text(out / "study.md", study_markdown(summary))
        return summary
    finally:
        torch.set_num_threads(previous_threads)


def _export(src: Path, dst: Path, seed: int) -> Path:
    if not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
        stages.export_checkpoint(src, dst, {"study": dst.stem, "seed": seed})
    return dst


def _history_tail(run: Path, fraction: float = 0.2) -> dict[str, float]:
    """Means of the logged patch diagnostics over the last ``fraction`` of the run's training log."""
    path = run / "history.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text(encoding="utf-8")).get("train", [])
    tail = rows[-max(1, int(round(len(rows) * fraction))):]
    out = {}
    for key in ("std_ratio", "flat", "ssim", "l1"):
        values = [float(r[key]) for r in tail if key in r]
        if values:
            out[key] = float(np.mean(values))
    return out


def summarise(cells: Mapping[str, Any], histories: Mapping[int, Mapping[str, Mapping[str, float]]],
              table: Mapping[str, Mapping[str, Any]], names: Sequence[str], metric: str = "patd_dense"
              ) -> dict[str, Any]:
    """Per variant and level: the validation cell, the paired difference against the reference, and the
    mean over seeds of the training diagnostics; the choice is the lowest mean over levels."""
    levels = cells["levels"]
    rows = {}
    for name in names:
        per_level = {}
        for lv in levels:
            c = rep.cell(cells, metric, name, lv)
            d = rep.difference(cells, metric, name, REFERENCE, lv) if name != REFERENCE else None
            per_level[lv] = {"cell": c.to_dict() if c else None, "vs_reference": d.to_dict() if d else None,
                             "within_noise": None if d is None else d.within_noise}
        diag = {}
        for key in ("std_ratio", "flat"):
            vals = [h[name][key] for h in histories.values() if key in h.get(name, {})]
            if vals:
                diag[key] = float(np.mean(vals))
        means = [v["cell"]["mean"] for v in per_level.values() if v["cell"]]
        rows[name] = {"overrides": dict(table.get(name, {})), "levels": per_level, "diagnostics": diag,
                      "mean": float(np.mean(means)) if means else None}
    scored = {k: v["mean"] for k, v in rows.items() if v["mean"] is not None}
    best = min(scored, key=scored.get) if scored else None
    noise = None
    if best is not None and best != REFERENCE:
        noise = all(rows[best]["levels"][lv]["within_noise"] in (True, None) for lv in levels)
    return {"metric": metric, "levels": list(levels), "variants": rows, "best": best,
            "best_within_noise_of_reference": noise, "values": cells}


def study_markdown(summary: Mapping[str, Any]) -> str:
    levels = summary["levels"]
    lines = [f"# Patch-loss study (validation only), budget `{summary['budget']}`, seeds "
             f"{', '.join(map(str, summary['seeds']))}", "",
             f"Variants of the *{REFERENCE}* fine-tune (L1 + local SSIM), each with one setting changed, "
             f"scored by dense-surface PATD on the {len(summary['validation_avatars'])} validation avatars; "
             "the difference is variant − reference per validation person, with its 95 % bootstrap "
             "interval (negative: the variant is better). `std_ratio` is predicted / GT in-patch standard "
             "deviation over the last 20 % of training (1: the net reproduces the GT's texture contrast).",
             "", "| variant | setting | " + " | ".join(f"{lv} PATD | {lv} − ref." for lv in levels)
             + " | std_ratio | flat |", "|---" * (2 * len(levels) + 4) + "|"]
    for name, row in summary["variants"].items():
        setting = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                            for k, v in row["overrides"].items()) or "as the column"
        cells = []
        for lv in levels:
            c, d = row["levels"][lv]["cell"], row["levels"][lv]["vs_reference"]
            cells.append("–" if c is None else f"{c['mean']:.2f} [{c['low']:.2f}, {c['high']:.2f}]")
            cells.append("–" if d is None else f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]")
        diag = row["diagnostics"]
        lines.append(f"| {name} | {setting} | " + " | ".join(cells) + " | "
                     + f"{diag.get('std_ratio', float('nan')):.2f} | {diag.get('flat', float('nan')):.2f} |")
    best = summary["best"]
    verdict = ("" if best == REFERENCE or best is None else
               " Its difference from the reference is within noise on every level." if
               summary["best_within_noise_of_reference"] else
               " It differs from the reference beyond noise on at least one level.")
    persons = len(summary["values"]["subjects"])
    caution = ([f"**Caution: {persons} validation persons.** A percentile bootstrap over so few persons is "
                "too narrow: a difference counts as beyond noise only if its interval excludes 0 and the "
                "exact sign-flip test over persons gives p < 0.05 (smallest possible: "
                f"{2 / 2 ** persons:.3f}).", ""] if persons < 8 else [])
    lines += ["", *caution, f"Lowest mean validation PATD over the levels: **{best}**.{verdict}", "",
              "Wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["timings"].items()), ""]
    return "\n".join(lines)
