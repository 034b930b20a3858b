"""The training configuration: one typed dataclass shared by the CLI, TOML files and the server.

Every field has a default; ``data`` and ``out`` are required. A TOML file holds any subset of the fields
at top level (or under a ``[train]`` table); CLI flags override it. The resolved configuration is stored
in the run folder and inside every checkpoint, so a resumed run uses the same settings. docs/training.md
has the reference table.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.data.sampling import (
    PATCH_MODES,
    PATCH_WEIGHTINGS,
    PIFU_COLOR_SIGMA,
    PIFU_GEOMETRY_SIGMA,
)
from backend.errors import InputError
from backend.train.losses import COLOR_LOSSES, OCCUPANCY_LOSSES, SSIM_RANGES, SSIM_VARIANTS

STAGES = ("geometry", "color", "both")
MODEL_PRESETS = ("small", "official")
VAL_MODES = ("gt-vertices", "recon")

# Fields that may change when a run is resumed (they do not change what the run computes, or extend it).
RESUMABLE_CHANGES = frozenset({"steps", "epochs", "device", "workers", "log_every", "checkpoint_every",
                               "keep_checkpoints", "val_every", "progress_bar", "resume", "cache_dir",
                               "amp"})


@dataclass
class TrainConfig:
    """All settings of one training run (see docs/training.md for the meaning of each)."""

    # -- data and run folder
    data: str = ""
    out: str = ""
    levels: list[str] | None = None
    # -- initialisation (at most one of init / init_g+init_c / resume)
    init: str | None = None
    init_g: str | None = None
    init_c: str | None = None
    resume: bool = False
    model: str | None = None
    """Architecture preset: ``small`` / ``official``; None = ``official`` with init_g, else ``small``."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # -- what is trained and how
    stage: str = "color"
    loss: str = "ssim"
    w_l1: float = 1.0
    w_ssim: float = 1.0
    ssim_variant: str = "local"
    ssim_range: str = "unit"
    """SSIM on sRGB in [0, 1] with L = 1 ("unit") or on the [-1, 1] encoding with L = 2 ("signed",
    design.md's wording); docs/training.md says why "unit" is the default."""
    occupancy_loss: str = "mse"
    steps: int | None = None
    epochs: float | None = None
    batch: int = 2
    lr: float = 1e-3
    lr_decay_at: list[float] = field(default_factory=list)
    lr_gamma: float = 0.1
    grad_clip: float | None = None
    # -- sampling (canonical units; PIFu's values converted)
    points_geometry: int = 5000
    points_color: int = 5000
    patches: int = 200
    patch_k: int = 5
    patch_spacing: float = 0.01
    patch_mode: str = "grid"
    patch_weighting: str = "uniform"
    sigma_geometry: float = PIFU_GEOMETRY_SIGMA
    sigma_color: float = PIFU_COLOR_SIGMA
    sigma_patch: float = PIFU_COLOR_SIGMA
    dense_samples: int = 200_000
    pool_surface: int = 100_000
    pool_uniform: int = 10_000
    cache_dir: str | None = None
    # -- runtime
    device: str | None = None
    amp: bool = True
    workers: int = 2
    seed: int = 0
    # -- logging, checkpoints, validation
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    val_every: int = 200
    val_mode: str = "gt-vertices"
    val_subjects: int | None = None
    val_views: list[int] = field(default_factory=lambda: [0])
    val_levels: list[str] | None = None
    val_max_vertices: int = 20_000
    val_gt_samples: int = 200_000
    val_resolution: int = 128
    progress_bar: bool = True

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        if not isinstance(d, dict):
            raise InputError(f"training config must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"unknown training config field(s): {', '.join(unknown)} "
                             f"(see docs/training.md for the list)")
        cfg = cls(**{k: _copy(v) for k, v in d.items()})
        cfg.validate()
        return cfg

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        raw = toml_fields(path)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _copy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> TrainConfig:
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    # -- checks -------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`InputError` naming every bad field."""
        p: list[str] = []
        if not self.data:
            p.append("data (the dataset folder) is required")
        if not self.out:
            p.append("out (the run folder) is required")
        _choice(p, "stage", self.stage, STAGES)
        _choice(p, "loss", self.loss, COLOR_LOSSES)
        _choice(p, "ssim_variant", self.ssim_variant, SSIM_VARIANTS)
        _choice(p, "ssim_range", self.ssim_range, SSIM_RANGES)
        _choice(p, "occupancy_loss", self.occupancy_loss, OCCUPANCY_LOSSES)
        if self.model is not None:
            _choice(p, "model", self.model, MODEL_PRESETS)
        _choice(p, "patch_mode", self.patch_mode, PATCH_MODES)
        _choice(p, "patch_weighting", self.patch_weighting, PATCH_WEIGHTINGS)
        _choice(p, "val_mode", self.val_mode, VAL_MODES)
        if self.init and (self.init_g or self.init_c):
            p.append("give either init (a project checkpoint) or init_g/init_c (official nets), not both")
        if self.init_c and not self.init_g:
            p.append("init_c needs init_g: the colour net reads the geometry net's features")
        if self.steps is not None and self.epochs is not None:
            p.append("give steps or epochs, not both")
        if self.steps is not None and self.steps < 1:
            p.append(f"steps must be >= 1, got {self.steps}")
        if self.epochs is not None and not self.epochs > 0:
            p.append(f"epochs must be > 0, got {self.epochs}")
        for name in ("batch", "points_geometry", "points_color", "patches", "dense_samples",
                     "pool_surface", "pool_uniform", "log_every", "checkpoint_every", "keep_checkpoints",
                     "val_every", "val_max_vertices", "val_gt_samples", "val_resolution"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                p.append(f"{name} must be a positive integer, got {value!r}")
        vs = self.val_subjects
        if vs is not None and (not isinstance(vs, int) or vs < 0):
            p.append(f"val_subjects must be >= 0 (0 turns validation off), got {self.val_subjects!r}")
        if not isinstance(self.workers, int) or self.workers < 0:
            p.append(f"workers must be >= 0, got {self.workers!r}")
        if not isinstance(self.patch_k, int) or self.patch_k < 2:
            p.append(f"patch_k must be an integer >= 2, got {self.patch_k!r}")
        for name in ("lr", "patch_spacing"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                p.append(f"{name} must be > 0, got {value!r}")
        for name in ("w_l1", "w_ssim", "sigma_geometry", "sigma_color", "sigma_patch"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                p.append(f"{name} must be >= 0, got {value!r}")
        if not 0 < self.lr_gamma <= 1:
            p.append(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if any(not 0 < f < 1 for f in self.lr_decay_at):
            p.append(f"lr_decay_at holds fractions of the run in (0, 1), got {self.lr_decay_at}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            p.append(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.stage in ("geometry", "both") and self.pool_surface < 4 * self.points_geometry:
            p.append(f"pool_surface ({self.pool_surface}) must be >= 4 * points_geometry "
                     f"({4 * self.points_geometry}): PIFu draws 4N surface candidates per item")
        if self.stage in ("geometry", "both") and self.pool_uniform < max(1, self.points_geometry // 4):
            p.append(f"pool_uniform ({self.pool_uniform}) must be >= points_geometry / 4")
        if self.levels is not None and (not isinstance(self.levels, list) or not self.levels):
            p.append("levels must be a non-empty list of level names (or unset for all)")
        if not isinstance(self.model_overrides, dict):
            p.append("model_overrides must be a mapping of ModelConfig fields")
        if p:
            raise InputError("invalid training config: " + "; ".join(p))

    # -- derived ------------------------------------------------------------------------------------
    @property
    def trains_geometry(self) -> bool:
        return self.stage in ("geometry", "both")

    @property
    def trains_color(self) -> bool:
        return self.stage in ("color", "both")

    @property
    def model_preset(self) -> str:
        return self.model or ("official" if self.init_g else "small")

    @property
    def uses_patches(self) -> bool:
        return self.trains_color and self.loss != "l1"

    def total_steps(self, items: int) -> int:
        """Optimiser steps of the run: ``steps``, or ``ceil(epochs * items / batch)`` (default 1000)."""
        if self.steps is not None:
            return int(self.steps)
        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * items / self.batch))
        return 1000


def toml_fields(path: str | Path) -> dict[str, Any]:
    """The fields of a TOML config file: its top level, or its ``[train]`` table if it has one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"could not parse {path}: {exc}") from exc
    return dict(raw["train"]) if isinstance(raw.get("train"), dict) else raw


def _copy(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return [_copy(x) for x in v]
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    return v


def _choice(problems: list[str], name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        problems.append(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
