"""The experiment's stages as functions of (run folder, budget, ...): each one knows when its output is
already complete, so a killed experiment re-run continues where it stopped.

* :func:`synthesize_avatars` - sample avatars (``backend.data.synth``), skipped per finished avatar;
* :func:`render_dataset` - the relit dataset through the render library API, as ``avatex render``
  does (finished views are skipped by the renderer itself), with an exact held-out share
  (:func:`held_out_fraction`);
* :func:`train_run` - one ``run_training`` run: skipped when its last checkpoint is at the planned step,
  resumed (``resume=True``) from its last checkpoint otherwise;
* :func:`export_checkpoint` - a training checkpoint without optimiser state, for shipping and evaluation.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from avatex_core.progress import NULL, Progress
from backend.errors import CancelledError, InputError
from backend.experiment.budgets import BASELINE_LEVEL, Budget

ROOT = Path(__file__).resolve().parents[2]

AVATAR_PREFIX = "subject_"
_STEP = re.compile(r"^step-(\d{8})\.pt$")


# -- synth --------------------------------------------------------------------------------------------

def avatar_paths(folder: Path, count: int) -> list[Path]:
    """The vertex-coloured PLYs the synth stage makes (the GT kind the paper used: 2K2K's coloured PLYs)."""
    return [folder / f"{AVATAR_PREFIX}{i:04d}.ply" for i in range(count)]


def avatars_done(folder: Path, count: int) -> bool:
    """synth writes each avatar's JSON last: all JSONs present = all avatars complete."""
    return all((folder / f"{AVATAR_PREFIX}{i:04d}.json").is_file() for i in range(count))


def synthesize_avatars(folder: Path, budget: Budget, seed: int, *, progress: Progress = NULL,
                       poses: bool = False) -> list[Path]:
    """Make the budget's avatars (only the missing ones) and return their PLY paths; ``poses`` gives each
    a random pose from anny's rig (the protocol's population A)."""
    from backend.data.synth import synthesize

    missing = [i for i in range(budget.subjects)
               if not (folder / f"{AVATAR_PREFIX}{i:04d}.json").is_file()]
    # synthesize() makes a consecutive range; avatar i depends only on (seed, i), so the range from the
    # first missing one redoes at most a few finished avatars, identically.
    if missing:
        synthesize(budget.subjects - missing[0], folder, seed=seed, prefix=AVATAR_PREFIX, start=missing[0],
                   texture_size=budget.texture_size, subdivisions=budget.subdivide, poses=poses,
                   progress=progress)
    return avatar_paths(folder, budget.subjects)


# -- render -------------------------------------------------------------------------------------------

def split_value(sid: str, seed: int) -> float:
    """The renderer's split hash of a subject id (``avatex_core.dataset_layout.split_of``)."""
    from avatex_core import dataset_layout as layout

    return layout._hash_int(f"split:{seed}:{sid}") / 2.0 ** 64  # noqa: SLF001 - the one definition


def held_out_fraction(subject_ids: Sequence[str], test_count: int, seed: int) -> float:
    """A ``--test-fraction`` that puts exactly ``test_count`` of these subjects in the test split.

    The renderer splits by a hash of (seed, subject id) compared with the fraction; with a handful of
    subjects a plain 0.2 can hold out none or half of them. The threshold is put midway between the
    ``test_count``-th and the next hash value, so the split is exact and stays what it was on resume.
    """
    values = sorted(split_value(sid, seed) for sid in subject_ids)
    if not 1 <= test_count < len(values):
        raise InputError(f"cannot hold out {test_count} of {len(values)} subjects")
    return round(0.5 * (values[test_count - 1] + values[test_count]), 12)


def render_arguments(meshes: Sequence[Path], out: Path, budget: Budget, seed: int, test_fraction: float,
                     threads: int = 0) -> list[str]:
    """``avatex render`` options (``avatex_core.render_options``) for the budget's dataset."""
    argv = ["--meshes", *map(str, meshes), "--out", str(out), "--views", str(budget.views),
            "--step", str(budget.step_deg), "--levels", ",".join(budget.levels),
            "--resolution", str(budget.resolution), "--samples", str(budget.samples),
            "--albedo-samples", str(budget.albedo_samples), "--seed", str(seed),
            "--test-fraction", repr(test_fraction), "--threads", str(threads)]
    if not budget.denoise:
        argv.append("--no-denoise")
    return argv


def dataset_complete(root: Path, subjects: int, views: int) -> bool:
    """Every subject rendered with every view (the renderer's own records say so)."""
    from backend.data.dataset import Dataset, DatasetError

    if not (root / "manifest.json").is_file():
        return False
    try:
        ds = Dataset(root)
    except DatasetError:
        return False
    sids = ds.subjects()
    return len(sids) + len(ds.failed) >= subjects and all(len(ds.views_of(s)) >= views for s in sids)


def render_dataset(meshes: Sequence[Path], out: Path, budget: Budget, seed: int, test_count: int,
                   threads: int = 0, *, progress: Progress = NULL, test_fraction: float | None = None,
                   levels: Sequence[str] | None = None) -> None:
    """Render (or finish rendering) the relit dataset with the render library API, as ``avatex render``
    does; ``progress`` follows the images and cancels the render.

    ``test_fraction`` (0: all train, 1: all test) replaces the exact held-out share of ``test_count``;
    ``levels`` replaces the budget's lighting levels (the protocol renders population A clear only).
    """
    from avatex_core import dataset_layout as layout
    from avatex_core import render_jobs as jobs
    from avatex_core.render_options import add_arguments
    from backend.blender import blender_command

    ids = layout.subject_ids(list(meshes))
    fraction = held_out_fraction(ids, test_count, seed) if test_fraction is None else test_fraction
    parser = argparse.ArgumentParser(prog="avatex render")
    add_arguments(parser)
    argv = render_arguments(meshes, out, budget, seed, fraction, threads)
    if levels is not None:
        argv[argv.index("--levels") + 1] = ",".join(levels)
    args = parser.parse_args(argv)
    try:
        request = jobs.RenderRequest.from_args(args)
    except jobs.RequestError as exc:
        raise InputError(f"cannot render the dataset: {exc}") from None
    render = jobs.DatasetRender(request, blender_command("render_dataset.py"), cwd=ROOT)
    summary = render.run(progress=progress)
    if summary.cancelled:
        raise CancelledError("rendering interrupted; run the same command again to resume")
    if summary.exit_code not in (0, 1):
        raise InputError(f"rendering the dataset failed ({'; '.join(summary.fatal) or 'no images'}); "
                         f"see {request.out / 'logs'}")


def check_dataset(root: Path) -> Any:
    """The dataset an experiment trains and evaluates on, or an InputError saying why it cannot."""
    from backend.data.dataset import Dataset

    ds = Dataset(root)
    if not ds.split("test"):
        raise InputError(f"the dataset {root} has no test split (no held-out subjects): the experiment "
                         "evaluates on held-out subjects; render it with `avatex render --test-fraction F` "
                         "(F > 0) so that some subjects land in the test split")
    if not ds.split("train"):
        raise InputError(f"the dataset {root} has no training subjects (every subject is in the test split)")
    if BASELINE_LEVEL not in ds.levels:
        raise InputError(f"the dataset {root} has no {BASELINE_LEVEL!r} level (it has "
                         f"{', '.join(ds.levels)}); the baseline trains on {BASELINE_LEVEL!r} renders")
    if len(ds.levels) < 2:
        raise InputError(f"the dataset {root} has only the level(s) {ds.levels}; fine-tuning needs several "
                         "lighting levels")
    return ds


# -- training -----------------------------------------------------------------------------------------

def checkpoint_step(path: Path) -> int:
    m = _STEP.match(path.name)
    return int(m.group(1)) if m else -1


def finished_checkpoint(run: Path, steps: int) -> Path | None:
    """The run's final checkpoint if the run reached ``steps``, else None."""
    from backend.train.loop import latest_checkpoint

    last = latest_checkpoint(run)
    return last if last is not None and checkpoint_step(last) >= steps else None


def train_run(config: dict[str, Any], *, progress: Progress = NULL) -> tuple[Path, bool]:
    """Run, resume or skip one training run; (final checkpoint, whether any step was trained now).

    A run folder with checkpoints is resumed with only the fields resuming may change (device, workers,
    progress bar), so a re-run with another device continues the same optimisation.
    """
    from backend.train import run_training
    from backend.train.loop import latest_checkpoint

    run = Path(config["out"])
    steps = int(config["steps"])
    done = finished_checkpoint(run, steps)
    if done is not None:
        return done, False
    if latest_checkpoint(run) is not None:
        config = {"out": str(run), "resume": True, "device": config.get("device"),
                  "workers": config.get("workers"), "progress_bar": config.get("progress_bar", True)}
        config = {k: v for k, v in config.items() if v is not None}
    result = run_training(config, progress=progress)
    return Path(result["checkpoint"]), True


def training_configs(budget: Budget, data: Path, levels: Sequence[str], train_dir: Path, seed: int,
                     device: str | None, progress_bar: bool) -> dict[str, dict[str, Any]]:
    """The four runs: geometry and colour stages of the baseline (clear renders, L1), then the two
    fine-tunes of the baseline's colour net on every level with netG frozen (L1; patch-SSIM).

    ``levels`` are the dataset's; every colour run validates on all of them (PATD on the held-out
    subjects' GT vertices, ``val_mode = gt-vertices``), so their curves are comparable. The colour runs
    start from the previous run's final checkpoint, which the pipeline fills in as ``init``.
    """
    common = {"data": str(data), "seed": seed, "val_levels": list(levels), "progress_bar": progress_bar}
    if device:
        common["device"] = device
    all_levels = None  # every level of the dataset
    runs = {"geometry": ("geometry", {"stage": "geometry", "levels": [BASELINE_LEVEL]}),
            "baseline": ("baseline", {"stage": "color", "loss": "l1", "levels": [BASELINE_LEVEL]}),
            "l1": ("finetune", {"stage": "color", "loss": "l1", "levels": all_levels}),
            "ssim": ("finetune", {"stage": "color", "loss": budget.ssim_loss, "levels": all_levels})}
    return {name: {**_plain(budget.overrides(sized_by)), **common, "out": str(train_dir / name), **what}
            for name, (sized_by, what) in runs.items()}


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Copies of a budget's override values, as TrainConfig wants them (lists, not tuples)."""
    return {k: list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, dict) else v
            for k, v in values.items()}


# -- export -------------------------------------------------------------------------------------------

def export_checkpoint(src: Path, dst: Path, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``src``'s model to ``dst`` without the optimiser, RNG and history state.

    The result is an ordinary avatex checkpoint (``load_models(checkpoint=dst)``, weights_only) whose
    ``train_state`` holds only ``provenance`` (plain values: what made it, its metrics): a third of the
    training checkpoint's size, since Adam keeps two moments per weight.
    """
    from backend.models.checkpoint import load_checkpoint, save_checkpoint

    model, state = load_checkpoint(src, device="cpu")
    info: dict[str, Any] = {"source_step": int(state.get("step", 0))}
    if isinstance(state.get("config"), dict):
        cfg = state["config"]
        info["training"] = {k: cfg.get(k) for k in ("stage", "loss", "levels", "steps", "batch", "lr", "seed",
                                                     "ssim_variant", "ssim_range", "ssim_space",
                                                     "patch_min_std", "init")}
    info.update(provenance or {})
    save_checkpoint(dst, model, {"provenance": info})
    return dst


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
