"""``avatex protocol``: the paper's comparison on a population change, several seeds, intervals.

The baseline is pretrained on population A (anny avatars with painted clothes, or ``--population-a``),
lit clear as PIFu's own data is for pretraining, and fine-tuned on population B (real clothed avatars,
``--population-b``, split by person into train / validation / test). Per training seed:

    RUN/protocol.json          what this run is (budget, seeds, sources); a re-run must ask for the same
    RUN/split.json             B's split by person group (backend.experiment.population)
    RUN/population_a/          synthesised A avatars (absent with --population-a)
    RUN/data/a                 A rendered at A's levels (a few held out for pretraining's curve only)
    RUN/data/b_dev             B-train (split "train") and B-validation (split "test" of this dataset)
    RUN/data/b_test            B-test only: no training run is ever given this folder
    RUN/seed_S/train/<run>     geometry, baseline (A) and the five fine-tunes (B-train)
    RUN/seed_S/models/*.pt     the six models
    RUN/seed_S/eval_val/       the six models on B-validation (design choices are made here)
    RUN/seed_S/eval_test/      the six models on B-test: written and read by the report stage only
    RUN/results/               protocol.md, protocol.json, validation.json, protocol_levels.png
    RUN/results/images/        side-by-side reconstructions of three test avatars (report stage)
    RUN/figures/eval           their evaluation with meshes kept (first seed's models)

**The test split is touched once.** Its dataset is rendered apart, no training config names it (checked
before training), its evaluation runs inside the report stage (:func:`reading_test`), and
:func:`read_test_evaluation` refuses any other caller. ``RUN/test_touched.json`` records the models'
checksums when test was first evaluated: re-evaluating test with other models is refused, so no choice
can be iterated against it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from avatex_core.atomic import write_json
from avatex_core.progress import NULL, Progress
from backend.errors import InputError
from backend.experiment import population as pop
from backend.experiment import stages
from backend.experiment.budgets import BASELINE_LEVEL
from backend.experiment.protocol_budgets import (
    COLUMN_TRAINING,
    COLUMNS,
    FINETUNES,
    ProtocolBudget,
    get_protocol_budget,
)

FORMAT = "avatex-protocol"
FORMAT_VERSION = 1
_READING_TEST = contextvars.ContextVar("avatex_protocol_reading_test", default=False)


@contextlib.contextmanager
def reading_test() -> Iterator[None]:
    """The report stage's context: the only one in which test metrics may be computed or read."""
    token = _READING_TEST.set(True)
    try:
        yield
    finally:
        _READING_TEST.reset(token)


def _require_report_stage(what: str) -> None:
    if not _READING_TEST.get():
        raise InputError(f"{what}: test metrics are read only by the protocol's report stage (every design "
                         "choice is made on validation; use the seed folders' eval_val/)")


def read_test_evaluation(path: str | Path):
    """Load a test evaluation; refused outside :func:`reading_test` (module docstring)."""
    from backend.evaluation import load_evaluation

    _require_report_stage(f"reading {path}")
    return load_evaluation(path)


# -- populations ---------------------------------------------------------------------------------------

def population_a_meshes(folder: str | Path) -> list[Path]:
    """The meshes of an A folder: its top-level PLYs (synth's vertex-coloured GT), else its OBJs, else a
    VALID-like ``NAME/NAME.obj`` per sub-folder."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"--population-a folder not found: {root}")
    for found in (sorted(root.glob("*.ply")), sorted(root.glob("*.obj")),
                  sorted(p / f"{p.name}.obj" for p in root.iterdir() if (p / f"{p.name}.obj").is_file())):
        if found:
            return found
    raise InputError(f"--population-a {root} holds no .ply or .obj meshes")


def limit_split(split: dict[str, list[str]], avatars: Sequence[pop.Avatar], b_max: dict[str, int] | None
                ) -> dict[str, list[str]]:
    """At most ``b_max[s]`` avatars per split (the smoke budget), as many persons as possible.

    Avatars are taken round-robin over the split's person groups (the ALWAYS_TEST persons first in
    test), so a capped split holds as many independent persons as its cap allows. Dropping avatars never
    moves one to another split, so disjointness by person is kept.
    """
    if not b_max:
        return split
    group = {a.name: a.group for a in avatars}
    forced = {pop.group_of(p) for p in pop.ALWAYS_TEST}
    out = {}
    for s, names in split.items():
        cap = int(b_max.get(s, len(names)))
        members: dict[str, list[str]] = {}
        for n in sorted(names, key=lambda n: (group[n] not in forced, group[n], n)):
            members.setdefault(group[n], []).append(n)
        kept: list[str] = []
        rank = 0
        while len(kept) < min(cap, len(names)):
            kept += [m[rank] for m in members.values() if rank < len(m)][:cap - len(kept)]
            rank += 1
        out[s] = sorted(kept)
    return out


def _load_or_write_split(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("splits") != record["splits"]:
            raise InputError(f"{path} holds another split of population B (other avatars or seed); resume "
                             "with the same --population-b and --split-seed, or choose another --out")
        return old
    write_json(path, record)
    return record


def assign_splits(root: Path, splits: dict[str, str]) -> None:
    """Write the protocol's split into a rendered dataset's manifest.

    The renderer splits by a hash of the subject id; the protocol's split is by person group, so after
    rendering B-dev with every subject in "train", the validation subjects are marked "test" (the split
    training validates on). Idempotent; run again after every (re)render.
    """
    from avatex_core.dataset_layout import MANIFEST

    path = root / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for sid, entry in manifest.get("subjects", {}).items():
        want = splits.get(sid)
        if want is None:
            raise InputError(f"{root}: subject {sid!r} is not in the protocol's split; choose another --out")
        if entry.get("split") != want:
            entry["split"] = want
            changed = True
    if changed:
        write_json(path, manifest)


# -- configs -------------------------------------------------------------------------------------------

def training_configs(b: ProtocolBudget, *, data_a: Path, data_b: Path, data_test: Path, b_levels: list[str],
                     a_levels: list[str], train_dir: Path, seed: int, device: str | None,
                     progress_bar: bool) -> dict[str, dict[str, Any]]:
    """The seven runs of one seed: geometry and baseline on A (clear), five fine-tunes on B-train.

    Raises if any run would read the test dataset: the guard that keeps test out of every choice.
    """
    base = b.base
    common = {"seed": seed, "progress_bar": progress_bar, **({"device": device} if device else {})}

    def run(sized_by: str, name: str, data: Path, what: dict[str, Any], val_levels: list[str]) -> dict:
        return {**stages._plain(base.overrides(sized_by)), **common, "data": str(data),  # noqa: SLF001
                "out": str(train_dir / name), "val_levels": val_levels, **what}

    clear = [BASELINE_LEVEL]
    configs = {"geometry": run("geometry", "geometry", data_a, {"stage": "geometry", "levels": clear}, clear),
               "baseline": run("baseline", "baseline", data_a, {"stage": "color", "loss": "l1",
                                                                "levels": clear}, a_levels)}
    for name in FINETUNES:
        configs[name] = run("finetune", name, data_b, {"stage": "color", **COLUMN_TRAINING[name]}, b_levels)
    test = str(Path(data_test).resolve())
    for name, cfg in configs.items():
        if str(Path(cfg["data"]).resolve()) == test:
            raise InputError(f"training run {name} would read the test dataset {test}; refused")
    return configs


# -- the run -------------------------------------------------------------------------------------------

def run_protocol(out: str | Path, *, population_b: str | Path, population_a: str | Path | None = None,
                 budget: str | ProtocolBudget = "small", seeds: Sequence[int] = (0, 1, 2),
                 split_seed: int = 0, a_seed: int = 0, device: str | None = None, threads: int | None = None,
                 progress: Progress = NULL, verbose: bool = True, command: str | None = None
                 ) -> dict[str, Any]:
    """Run (or continue) the protocol in ``out`` (module docstring); returns the report's paths and cells."""
    import torch

    b = budget if isinstance(budget, ProtocolBudget) else get_protocol_budget(budget)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds must be distinct integers, got {seeds}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    if population_a is None and a_seed == _fixture_seed():
        raise InputError(f"--a-seed {a_seed} would synthesise the test fixtures' avatars; choose another")
    root = Path(out).expanduser().resolve()
    avatars = pop.read_population(population_b)
    split = pop.split_population(avatars, seed=split_seed, val_fraction=b.val_fraction,
                                 test_fraction=b.test_fraction)
    split = limit_split(split, avatars, b.b_max)
    record = pop.split_record(avatars, split, seed=split_seed, val_fraction=b.val_fraction,
                              test_fraction=b.test_fraction, source=Path(population_b).expanduser().resolve())
    a_meshes_given = population_a_meshes(population_a) if population_a is not None else None
    spec = {"format": FORMAT, "format_version": FORMAT_VERSION, "budget": _jsonable(b.to_dict()),
            "seeds": seeds, "split_seed": split_seed,
            "population_a": {"kind": "meshes", "paths": [str(p) for p in a_meshes_given]}
            if a_meshes_given else {"kind": "synth", "subjects": b.a_subjects, "seed": a_seed},
            "population_b": str(Path(population_b).expanduser().resolve())}
    root.mkdir(parents=True, exist_ok=True)
    _check_spec(root / "protocol.json", spec)
    write_json(root / "protocol.json", spec)
    record = _load_or_write_split(root / "split.json", record)
    mesh_of = {a.name: a.mesh for a in avatars}

    previous_threads = torch.get_num_threads()
    from backend.experiment.pipeline import default_threads

    torch.set_num_threads(threads or default_threads(device))
    # Wall time per stage, summed over every invocation of this run (a resumed run adds to it).
    timings_path = root / "timings.json"
    timings: dict[str, float] = (json.loads(timings_path.read_text(encoding="utf-8"))
                                 if timings_path.is_file() else {})
    total_before = float(timings.pop("total", 0.0))
    started = time.monotonic()

    def timed(name: str, fn, *args, **kwargs):
        progress.check(f"protocol stopped before {name}; run the same command to resume")
        progress.report(name, 0.0)
        t = time.monotonic()
        result = fn(*args, **kwargs)
        timings[name] = round(timings.get(name, 0.0) + time.monotonic() - t, 1)
        write_json(timings_path, {**timings, "total": round(total_before + time.monotonic() - started, 1)})
        return result

    try:
        # -- data ---------------------------------------------------------------------------------
        data_a, data_b, data_test = root / "data" / "a", root / "data" / "b_dev", root / "data" / "b_test"
        if a_meshes_given is None:
            a_budget = dataclasses.replace(b.base, subjects=b.a_subjects, test_subjects=b.a_held_out)
            a_meshes = timed("synth_a", stages.synthesize_avatars, root / "population_a", a_budget, a_seed,
                             poses=b.a_poses)
        else:
            a_meshes = a_meshes_given
        a_budget = dataclasses.replace(b.base, subjects=len(a_meshes),
                                       test_subjects=min(b.a_held_out, len(a_meshes) - 1))
        if not stages.dataset_complete(data_a, len(a_meshes), b.base.views):
            timed("render_a", stages.render_dataset, a_meshes, data_a, a_budget, split_seed,
                  a_budget.test_subjects, levels=b.a_levels)
        b_base = dataclasses.replace(b.base, views=b.views_b)
        dev = [*record_names(record, "train"), *record_names(record, "val")]
        if not stages.dataset_complete(data_b, len(dev), b.views_b):
            timed("render_b", stages.render_dataset, [mesh_of[n] for n in dev], data_b, b_base, split_seed, 0,
                  test_fraction=0.0)
        assign_splits(data_b, {**{n: "train" for n in record_names(record, "train")},
                               **{n: "test" for n in record_names(record, "val")}})
        test_names = record_names(record, "test")
        if not stages.dataset_complete(data_test, len(test_names), b.views_b):
            timed("render_test", stages.render_dataset, [mesh_of[n] for n in test_names], data_test, b_base,
                  split_seed, 0, test_fraction=1.0)
        from backend.data.dataset import Dataset

        b_levels = list(Dataset(data_b).levels)
        a_levels = list(Dataset(data_a).levels)

        # -- training, per seed -------------------------------------------------------------------
        models: dict[int, dict[str, Path]] = {}
        for seed in seeds:
            folder = root / f"seed_{seed}"
            configs = training_configs(b, data_a=data_a, data_b=data_b, data_test=data_test,
                                       b_levels=b_levels, a_levels=a_levels, train_dir=folder / "train",
                                       seed=seed, device=device, progress_bar=verbose)
            finals: dict[str, Path] = {}
            for name in ("geometry", "baseline", *FINETUNES):
                cfg = dict(configs[name])
                if name != "geometry":
                    cfg["init"] = str(finals["geometry" if name == "baseline" else "baseline"])
                finals[name] = timed(f"train_{name}", stages.train_run, cfg)[0]
            models[seed] = {}
            for m in COLUMNS:
                dst = folder / "models" / f"{m}.pt"
                if not dst.is_file() or dst.stat().st_mtime < finals[m].stat().st_mtime:
                    stages.export_checkpoint(finals[m], dst, {"protocol": str(root), "model": m, "seed": seed,
                                                              "budget": b.name})
                models[seed][m] = dst

        # -- validation (every design choice is made here) ----------------------------------------
        val = {seed: timed("evaluate_val", _evaluate, models[seed], data_b,
                           root / f"seed_{seed}" / "eval_val", b, b_levels, device) for seed in seeds}
        from backend.experiment import protocol_report as rep

        groups = {row["avatar"]: row["group"] for rows in record["splits"].values() for row in rows}
        val_cells = rep.collect(val, levels=b_levels, groups=groups)
        choice = rep.choose_on_validation(val_cells)
        (root / "results").mkdir(parents=True, exist_ok=True)
        write_json(root / "results" / "validation.json", {"cells": val_cells, "choice": choice})

        # -- report: the one reading of test ------------------------------------------------------
        with reading_test():
            _touch_test_once(root, models)
            test = {seed: timed("evaluate_test", _evaluate, models[seed], data_test,
                                root / f"seed_{seed}" / "eval_test", b, b_levels, device) for seed in seeds}
            test_cells = rep.collect(test, levels=b_levels, groups=groups)
            figures = timed("figures", _figures, models[seeds[0]], data_test, root, b, b_levels, device)
        timings["total"] = round(total_before + time.monotonic() - started, 1)
        write_json(timings_path, timings)
        paths = rep.write_report(root / "results", test_cells=test_cells, val_cells=val_cells, choice=choice,
                                 record=record, budget=b, seeds=seeds, levels=b_levels, spec=spec,
                                 timings=timings, command=command, figures=figures, figure_seed=seeds[0])
        return {"run": str(root), "report": str(paths["report"]), "cells": test_cells, "choice": choice,
                "timings": timings}
    finally:
        torch.set_num_threads(previous_threads)


def _fixture_seed() -> int:
    """The synth seed of the committed anny fixtures (tests/fixtures/avatars): never population A."""
    from backend.experiment.pipeline import FIXTURE_SYNTH_SEED

    return FIXTURE_SYNTH_SEED


def record_names(record: dict[str, Any], split: str) -> list[str]:
    return [row["avatar"] for row in record["splits"][split]]


def _evaluate(models: dict[str, Path], data: Path, out: Path, b: ProtocolBudget, levels: list[str],
              device: str | None):
    """The six models on ``data``'s test split (validation for B-dev, test for B-test), resumable."""
    if out.name == "eval_test":
        _require_report_stage(f"evaluating {out}")
    return _evaluate_models({m: models[m] for m in COLUMNS}, data, out, b, levels, device)


def _evaluate_models(models: dict[str, Path], data: Path, out: Path, b: ProtocolBudget, levels: list[str],
                     device: str | None):
    """``models`` on ``data``'s test split with the budget's evaluation settings, resumable.

    ``eval_test`` is computed only inside the report stage (:func:`reading_test`). Image metrics (Blender
    renders of every reconstruction) are for the report: validation chooses on PATD without them.
    """
    from backend.evaluation import evaluate_runs

    if out.name == "eval_test":
        _require_report_stage(f"evaluating {out}")
    images = b.base.image_metrics and out.name == "eval_test"
    return evaluate_runs(dict(models), data, split="test", levels=levels,
                         views=list(b.eval_views), resolution=b.eval_resolution or b.base.eval_resolution,
                         k=b.base.k, device=device, image_metrics=images,
                         novel_views=b.base.novel_views, out_dir=out, keep_meshes=False)


FIGURE_COLUMNS = ("baseline", "l1", "ssim_seed", "l1_ssim")
"""The report's side-by-side reconstructions: the baseline, L1, the paper's SSIM-only and L1 + SSIM."""
FIGURE_LABELS = {"baseline": "Baseline", "l1": "L1", "ssim_seed": "SSIM (paper)", "l1_ssim": "L1 + SSIM"}
FIGURE_SUBJECTS = 3


def figure_subjects(names: Sequence[str], count: int = FIGURE_SUBJECTS) -> list[str]:
    """``count`` test avatars spread evenly over the sorted names: a fixed choice, made before any
    number was seen (the first, the middle, the last for three)."""
    names = sorted(names)
    if len(names) <= count:
        return names
    return [names[round(i * (len(names) - 1) / max(1, count - 1))] for i in range(count)]


def _figures(models: dict[str, Path], data: Path, root: Path, b: ProtocolBudget, levels: list[str],
             device: str | None) -> list[Path]:
    """Side-by-side images of a few test avatars (input | GT | FIGURE_COLUMNS | heatmaps, one row per
    level): their reconstructions are made again with meshes kept (the test evaluation keeps none), by
    the same models, so the values under the heatmaps are the test evaluation's."""
    from backend.data.dataset import Dataset
    from backend.evaluation import evaluate_runs
    from backend.experiment.report import subject_grid

    _require_report_stage("drawing test reconstructions")
    ds = Dataset(data)
    chosen = figure_subjects(ds.split("test"))
    view = int(b.eval_views[0])
    work = root / "figures"
    evaluation = evaluate_runs({m: models[m] for m in FIGURE_COLUMNS}, ds, split="test", levels=levels,
                               views=[view], resolution=b.eval_resolution or b.base.eval_resolution,
                               k=b.base.k, device=device, image_metrics=False, novel_views=0,
                               out_dir=work / "eval", keep_meshes=True, subjects=chosen)
    size = min(320, int(ds.resolution))
    return [subject_grid(evaluation, ds, sid, view, levels, work, root / "results" / "images" / f"{sid}.png",
                         size=size, eval_dir=work / "eval", models=FIGURE_COLUMNS, labels=FIGURE_LABELS)
            for sid in chosen]


def _touch_test_once(root: Path, models: dict[int, dict[str, Path]]) -> None:
    """Record the models test is evaluated with; refuse other models later (module docstring)."""
    _require_report_stage("evaluating the test split")
    sums = {str(s): {m: stages.file_sha256(p) for m, p in ms.items()} for s, ms in models.items()}
    path = root / "test_touched.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8")).get("models")
        if old != sums:
            raise InputError(f"{root}: the test split was already evaluated with other models "
                             f"({path}); the protocol touches test once - start a new --out")
        return
    write_json(path, {"models": sums})


ESTIMATE_ONLY = ("summary", "cost")
"""Budget fields that describe the estimate, not the run: a resumed run may see them changed."""


def _check_spec(path: Path, spec: dict[str, Any]) -> None:
    if not path.is_file():
        return
    old = json.loads(path.read_text(encoding="utf-8"))

    def run_fields(s: dict[str, Any]) -> dict[str, Any]:
        budget = {k: v for k, v in s.get("budget", {}).items() if k not in ESTIMATE_ONLY}
        return {**s, "budget": budget}

    old, new = run_fields(old), run_fields(spec)
    diffs = [k for k in new if old.get(k) != new[k]]
    if diffs:
        raise InputError(f"{path.parent} holds a different protocol run ({', '.join(diffs)} differ); re-run "
                         "it with its own options to resume, or choose another --out")


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=list))
