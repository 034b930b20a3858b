"""Budgets of the protocol (``avatex protocol``): population A → B, six columns, several seeds.

A protocol budget wraps an experiment :class:`~backend.experiment.budgets.Budget` for what the two share
(render settings, model size, the geometry / baseline / fine-tune step counts, evaluation) and adds what
only the protocol has: how many A avatars, how B is split and how much of it is used, the lighting of A,
the evaluated views. ``cost`` holds per-unit seconds measured on the 2-core development machine
(docs/experiment.md, "Budgets"); :func:`estimate_seconds` turns them into the stage estimate the docs state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from backend.errors import InputError
from backend.experiment.budgets import BUDGETS, SMALL_128, Budget

COLUMNS = ("baseline", "control", "l1", "ssim_seed", "ssim_local", "l1_ssim")
"""The protocol's models, in the report's order (docs/experiment.md, "Protocol")."""
FINETUNES = COLUMNS[1:]

COLUMN_LABELS = {
    "baseline": "Baseline (A, clear)",
    "control": "Control (B clear, L1)",
    "l1": "Fine-tuned L1",
    "ssim_seed": "SSIM-only (paper's statistics)",
    "ssim_local": "SSIM-only (local)",
    "l1_ssim": "L1 + local SSIM",
}

COLUMN_TRAINING: dict[str, dict[str, Any]] = {
    "control": {"loss": "l1", "levels": ["clear"]},
    "l1": {"loss": "l1", "levels": None},
    "ssim_seed": {"loss": "ssim", "ssim_variant": "seed", "levels": None},
    "ssim_local": {"loss": "ssim", "ssim_variant": "local", "levels": None},
    "l1_ssim": {"loss": "l1+ssim", "ssim_variant": "local", "levels": None},
}
"""How each fine-tune differs from the others: all start from the seed's baseline with netG frozen, on
B's training split, for the same steps. ``levels`` None is every level of B's renders."""


@dataclass(frozen=True)
class ProtocolBudget:
    """Sizes of one protocol run (module docstring)."""

    name: str
    summary: str
    base: Budget
    a_subjects: int
    """population A avatars to synthesise (ignored with --population-a, which uses every mesh given)."""
    a_held_out: int = 1
    """A avatars held out of pretraining (its validation curve only)."""
    a_poses: bool = True
    """random poses from anny's rig for the synthesised A avatars (``avatex synth --poses``)."""
    a_levels: tuple[str, ...] = ("clear",)
    """A's lighting: clear only, as PIFu's own data is lit for pretraining."""
    b_views: int | None = None
    """views per B avatar (None: the base budget's)."""
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    b_max: dict[str, int] | None = None
    """at most this many avatars per split of B (the smoke budget); None uses all."""
    eval_views: tuple[int, ...] = (0,)
    eval_resolution: int | None = None
    cost: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.a_subjects < 2:
            raise InputError(f"budget {self.name!r}: a_subjects must be >= 2, got {self.a_subjects}")
        if not 1 <= self.a_held_out < self.a_subjects:
            raise InputError(f"budget {self.name!r}: a_held_out must be in [1, a_subjects)")

    @property
    def views_b(self) -> int:
        return self.b_views or self.base.views

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "base"}
        out["base"] = self.base.to_dict()
        out["a_levels"] = list(self.a_levels)
        out["eval_views"] = list(self.eval_views)
        return out


_TEST = BUDGETS["test"]
_SMALL = BUDGETS["small"]
_FULL = BUDGETS["full"]


def _cpu(views: int, resolution: int, steps: tuple[int, int, int], **train: Any) -> Budget:
    """The experiment's ``small`` budget at ``views`` around the body, ``resolution`` px renders and
    (geometry, baseline, fine-tune) steps: the 2-core CPU budgets differ only in these."""
    g, c, f = steps
    return dataclasses.replace(
        _SMALL, views=views, step_deg=360.0 / views, resolution=resolution,
        train={"model_overrides": SMALL_128, "checkpoint_every": 50, "val_every": 100, **train},
        geometry={"steps": g, "lr": 1e-3, "lr_decay_at": [0.8]}, baseline={"steps": c, "lr": 1e-3},
        finetune={"steps": f, "lr": 1e-4}, eval_resolution=96, image_metrics=True, novel_views=1)


def _cpu_cost(image_s: float) -> dict[str, float]:
    return {"image_s": image_s, "cache_s": 11.0, "geometry_step_s": 0.45, "color_step_s": 0.55,
            "eval_item_s": 6.0}

PROTOCOL_BUDGETS: dict[str, ProtocolBudget] = {
    "test": ProtocolBudget(
        name="test", summary="smoke run: micro nets, a few steps, 2 views x wild/clear at 64 px; at most "
                             "4 / 2 / 3 B avatars per split", base=_TEST, a_subjects=3,
        b_max={"train": 4, "val": 2, "test": 3},
        cost={"image_s": 0.3, "cache_s": 2.0, "geometry_step_s": 0.05, "color_step_s": 0.05,
              "eval_item_s": 3.0},
    ),
    "small": ProtocolBudget(
        name="small", summary="under an hour on 2 CPU cores: 8 A avatars, at most 10 / 4 / 6 B avatars "
                              "(train / val / test), 4 views at 128 px, 400 / 150 / 80 steps per seed; image "
                              "metrics on the test split's input and back views",
        base=_cpu(4, 128, (400, 150, 80)), a_subjects=8, b_max={"train": 10, "val": 4, "test": 6},
        eval_views=(0,), cost=_cpu_cost(0.12),
    ),
    "medium": ProtocolBudget(
        name="medium", summary="under 2.5 h on 2 CPU cores: 13 A avatars, all 60 B avatars at 6 views x 3 "
                               "levels, 128 px input, 800 / 400 / 150 steps per seed; image "
                               "metrics on the test split's input and back views",
        base=_cpu(6, 256, (800, 400, 150), val_subjects=4), a_subjects=13, a_held_out=2, eval_views=(0,),
        cost={"image_s": 0.35, "cache_s": 11.0, "geometry_step_s": 0.65, "color_step_s": 0.9,
              "eval_item_s": 7.0, "eval_image_s": 0.3},
    ),
    "full": ProtocolBudget(
        name="full", summary="one GPU: 120 A avatars, every B avatar at 45 views x 3 levels, 512 px, the "
                             "official-size nets", base=_FULL, a_subjects=120, a_held_out=12,
        eval_views=(0, 11, 22, 33),
        cost={"image_s": 0.4, "cache_s": 12.0, "geometry_step_s": 0.25, "color_step_s": 0.2,
              "eval_item_s": 4.0},
    ),
}


def get_protocol_budget(name: str) -> ProtocolBudget:
    try:
        return PROTOCOL_BUDGETS[name]
    except KeyError:
        raise InputError(f"unknown protocol budget {name!r}; choose one of "
                         f"{', '.join(PROTOCOL_BUDGETS)}") from None


def estimate_seconds(b: ProtocolBudget, *, a_train: int, a_held: int, b_counts: dict[str, int],
                     seeds: int, b_levels: int | None = None) -> dict[str, float]:
    """Seconds per stage from the budget's per-unit costs: what docs/experiment.md states for medium.

    Renders: A at its levels + albedo; B (all splits) at its levels + albedo. Per seed: the geometry and
    baseline runs on A, five fine-tunes on B-train, and one evaluation of the six models on validation
    and one on test (each input reconstructed once, the colours re-queried per model: ``eval_item_s``
    is per input for all six), and the test split's image metrics (``eval_image_s`` per rendered image).
    """
    c = b.cost
    levels = b_levels or len(b.base.levels)
    n_b = sum(b_counts.values())
    steps = {run: b.base.setting("steps", run) for run in ("geometry", "baseline", "finetune")}

    def validations(run: str, subjects: int, n_levels: int) -> float:
        """The colour runs' validation passes (GT-vertex PATD, one view per subject and level)."""
        limit = b.base.setting("val_subjects", run)
        subjects = min(subjects, limit) if limit is not None else subjects
        passes = steps[run] // b.base.setting("val_every", run) + 2
        return passes * subjects * n_levels * 0.1 * c["eval_item_s"]

    per_seed = (steps["geometry"] * c["geometry_step_s"] + steps["baseline"] * c["color_step_s"]
                + validations("baseline", a_held, len(b.a_levels))
                + len(FINETUNES) * (steps["finetune"] * c["color_step_s"]
                                    + validations("finetune", b_counts["val"], levels)))
    eval_inputs = (b_counts["val"] + b_counts["test"]) * len(b.eval_views) * levels
    # Image metrics: every test reconstruction of every model rendered at its input and novel views.
    images = (b_counts["test"] * len(b.eval_views) * levels * len(COLUMNS) * (1 + b.base.novel_views)
              if b.base.image_metrics else 0)
    return {
        "render": ((a_train + a_held) * b.base.views * (len(b.a_levels) + 1)
                   + n_b * b.views_b * (levels + 1)) * c["image_s"],
        "caches": (a_train + b_counts["train"]) * c["cache_s"],
        "training": seeds * per_seed,
        "evaluation": seeds * (eval_inputs * c["eval_item_s"] + images * c.get("eval_image_s", 0.0)),
    }
