"""Experiment budgets: how much data, model, training and evaluation one ``avatex experiment`` spends.

A budget is plain data (a frozen dataclass), so the micro budget the tests use is just another entry of
:data:`BUDGETS`. Its training side is not a copy of the training settings: it is a set of overrides of
:class:`~backend.train.config.TrainConfig` (shared by the four runs, then per run), and every setting it
does not name keeps TrainConfig's default. The numbers of ``small`` were chosen from measurements on
the 2-core development machine (docs/experiment.md, "Budgets"); ``full`` is sized for one GPU and has
not been run here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from avatex_core.lighting import PAPER_LEVELS
from backend.errors import InputError

LEVELS = PAPER_LEVELS
BASELINE_LEVEL = "clear"
SsimLoss = Literal["ssim", "l1+ssim"]
RUNS = ("geometry", "baseline", "finetune")
"""The training runs a budget sizes; the L1 and patch-SSIM fine-tunes share ``finetune``."""

EXPERIMENT_TRAIN: dict[str, Any] = {"model": "small", "log_every": 10, "keep_checkpoints": 2,
                                    "val_every": 100, "checkpoint_every": 100, "workers": 1}
"""TrainConfig overrides of every experiment run, under each budget's own ``train``."""


@dataclass(frozen=True)
class Budget:
    """Every size and step count of one experiment (docs/experiment.md explains each choice)."""

    # Field lists like TrainConfig's in shape only: the experiment's sizes, not a training run's.
    name: str
    summary: str
    # -- data: synthesised avatars rendered into a relit dataset
    subjects: int
    """avatars to synthesise (training + held out); ``--subjects`` overrides it."""
    test_subjects: int
    """held-out avatars (the test split); the split is made exact, not left to the hash's luck."""
    views: int
    step_deg: float
    resolution: int
    levels: tuple[str, ...] = LEVELS
    samples: int = 16
    albedo_samples: int = 16
    denoise: bool = True
    texture_size: int = 1024
    subdivide: int = 1
    # -- training (new nets: the baseline is trained from scratch): TrainConfig overrides
    train: Mapping[str, Any] = field(default_factory=dict)
    """overrides shared by the four runs (model size, batch, sampling, cadence), over EXPERIMENT_TRAIN."""
    geometry: Mapping[str, Any] = field(default_factory=lambda: {"steps": 1000, "lr": 1e-3,
                                                                 "lr_decay_at": [0.8]})
    """the geometry stage's own overrides."""
    baseline: Mapping[str, Any] = field(default_factory=lambda: {"steps": 500, "lr": 1e-3})
    """the colour stage on the clear renders (L1), the baseline."""
    finetune: Mapping[str, Any] = field(default_factory=lambda: {"steps": 300, "lr": 1e-4})
    """each of the two fine-tunes with netG frozen, on every level."""
    ssim_loss: SsimLoss = "l1+ssim"
    """the patch-SSIM model's loss: ``l1+ssim`` (L1 + local patch SSIM, 1:1) or ``ssim`` alone (what the
    paper's SSIM model used). docs/experiment.md has the measurements behind the default."""
    # -- evaluation of the three models on the held-out subjects
    eval_views: tuple[int, ...] | None = None
    """indices into the dataset's views (None: every view)."""
    eval_resolution: int = 256
    image_metrics: bool = True
    novel_views: int = 4
    k: int = 8
    # -- report
    report_subjects: int = 1
    report_view: int = 0
    report_size: int = 320
    # -- rough per-unit costs on the machine the budget is meant for (for the ETA only)
    cost: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.subjects < 2:
            problems.append(f"subjects must be >= 2 (training + held out), got {self.subjects}")
        if not 1 <= self.test_subjects < self.subjects:
            problems.append(f"test_subjects must be in [1, subjects), got {self.test_subjects}")
        if BASELINE_LEVEL not in self.levels:
            problems.append(f"levels must include {BASELINE_LEVEL!r} (the baseline trains on it)")
        if len(self.levels) < 2:
            problems.append("levels must hold at least two lighting levels (fine-tuning uses all of them)")
        for name in ("views", "resolution", "eval_resolution", "report_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for run in RUNS:
            steps = getattr(self, run).get("steps")
            if not isinstance(steps, int) or steps < 1:
                problems.append(f"{run}['steps'] must be an integer >= 1, got {steps!r}")
        if self.ssim_loss not in get_args(SsimLoss):
            problems.append(f"ssim_loss must be one of {', '.join(get_args(SsimLoss))}, "
                            f"got {self.ssim_loss!r}")
        if problems:
            raise InputError(f"budget {self.name!r}: " + "; ".join(problems))

    def with_subjects(self, count: int | None) -> Budget:
        """This budget with ``count`` avatars (``--subjects``); the held-out share shrinks with it."""
        if count is None or count == self.subjects:
            return self
        if count < 2:
            raise InputError(f"--subjects must be >= 2 (at least one to train on and one held out), "
                             f"got {count}")
        test = min(self.test_subjects, max(1, count // 5))
        return dataclasses.replace(self, subjects=count, test_subjects=test)

    def overrides(self, run: str) -> dict[str, Any]:
        """The TrainConfig fields this budget sets for ``run`` (one of :data:`RUNS`)."""
        return {**EXPERIMENT_TRAIN, **self.train, **getattr(self, run)}

    def setting(self, name: str, run: str = "finetune") -> Any:
        """TrainConfig field ``name`` as ``run`` uses it: the budget's override, else its default."""
        from backend.train.config import TrainConfig

        values = self.overrides(run)
        return values[name] if name in values else getattr(TrainConfig(), name)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @property
    def images_per_view(self) -> int:
        return len(self.levels) + 1  # the lit levels and the albedo


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# The small config at a 128 px input: the encoders cost a quarter of 256 px, and a step of batch 2
# takes ~0.5 s on one core (measured; docs/experiment.md). z_size keeps the depth feature at 1.28 z.
SMALL_128 = {"load_size": 128, "z_size": 50.0}

# A very small pair for the tests: a step costs a few hundredths of a second.
MICRO = {"load_size": 64, "z_size": 25.0, "num_stack": 1, "hg_width": 16, "hourglass_dim": 16,
         "norm_groups": 4, "mlp_dim": [17, 16, 8, 1], "color_ngf": 8, "color_blocks": 1,
         "mlp_dim_color": [49, 16, 8, 3]}

BUDGETS: dict[str, Budget] = {
    "test": Budget(
        name="test",
        summary="micro budget for the test suite: 3 avatars, 2 views x 2 levels at 64 px, a few steps",
        subjects=3, test_subjects=1, views=2, step_deg=180.0, resolution=64, levels=("wild", "clear"),
        samples=2, albedo_samples=1, denoise=False, texture_size=128, subdivide=0,
        train={"model_overrides": MICRO, "points_geometry": 400, "points_color": 400, "patches": 16,
               "dense_samples": 20_000, "pool_surface": 4_000, "pool_uniform": 400, "val_every": 2,
               "val_max_vertices": 2_000, "checkpoint_every": 2, "workers": 0},
        geometry={"steps": 4, "lr": 1e-3, "lr_decay_at": [0.8]}, baseline={"steps": 3, "lr": 1e-3},
        finetune={"steps": 4, "lr": 1e-3}, eval_views=(0,), eval_resolution=32, image_metrics=False,
        novel_views=0, report_size=96,
        cost={"synth_s": 2.0, "image_s": 0.3, "cache_s": 2.0, "geometry_step_s": 0.05, "color_step_s": 0.05,
              "eval_item_s": 2.0, "report_s": 20.0},
    ),
    "small": Budget(
        name="small",
        summary="about an hour on a 2-core CPU: 13 avatars (3 held out), 15 views x 3 levels at 256 px, "
                "the small model at 128 px input",
        subjects=13, test_subjects=3, views=15, step_deg=24.0, resolution=256,
        train={"model_overrides": SMALL_128, "checkpoint_every": 50},
        geometry={"steps": 2000, "lr": 1e-3, "lr_decay_at": [0.8]}, baseline={"steps": 800, "lr": 1e-3},
        finetune={"steps": 400, "lr": 1e-4}, ssim_loss="l1+ssim",
        eval_views=(0, 4, 8, 12), eval_resolution=128, image_metrics=True, novel_views=2, report_size=320,
        cost={"synth_s": 2.0, "image_s": 0.3, "cache_s": 11.0, "geometry_step_s": 0.5, "color_step_s": 0.55,
              "eval_item_s": 9.0, "report_s": 30.0},
    ),
    "full": Budget(
        name="full",
        summary="one GPU: 120 avatars (12 held out), 45 views x 3 levels at 512 px, the official-size "
                "model from scratch, tens of thousands of steps",
        subjects=120, test_subjects=12, views=45, step_deg=8.0, resolution=512, samples=32,
        train={"model": "official", "batch": 8, "val_every": 1000, "checkpoint_every": 1000, "workers": 8},
        geometry={"steps": 60_000, "lr": 1e-3, "lr_decay_at": [0.6, 0.8]},
        baseline={"steps": 30_000, "lr": 1e-3}, finetune={"steps": 10_000, "lr": 1e-5}, eval_views=None,
        eval_resolution=256, image_metrics=True, novel_views=4, report_subjects=3, report_size=512,
        cost={"synth_s": 2.0, "image_s": 0.4, "cache_s": 12.0, "geometry_step_s": 0.25, "color_step_s": 0.2,
              "eval_item_s": 4.0, "report_s": 300.0},
    ),
}


def get_budget(name: str) -> Budget:
    try:
        return BUDGETS[name]
    except KeyError:
        raise InputError(f"unknown budget {name!r}; choose one of {', '.join(BUDGETS)}") from None
