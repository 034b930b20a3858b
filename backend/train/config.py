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
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from backend.data.sampling import PIFU_COLOR_SIGMA, PIFU_GEOMETRY_SIGMA, PatchMode, PatchWeighting
from backend.errors import InputError
from backend.train.choices import ColorLoss, OccupancyLoss, SsimRange, SsimSpace, SsimVariant

Stage = Literal["geometry", "color", "both"]
ModelPreset = Literal["small", "official"]
ValMode = Literal["gt-vertices", "recon"]
STAGES: tuple[str, ...] = get_args(Stage)
MODEL_PRESETS: tuple[str, ...] = get_args(ModelPreset)
VAL_MODES: tuple[str, ...] = get_args(ValMode)

# Fields that may change when a run is resumed (they do not change what the run computes, or extend it).
RESUMABLE_CHANGES = frozenset({"steps", "epochs", "device", "workers", "log_every", "checkpoint_every",
                               "keep_checkpoints", "val_every", "progress_bar", "resume", "cache_dir",
                               "amp"})


@dataclass
class TrainConfig:
    """All settings of one training run (see docs/training.md for the meaning of each).

    The attribute docstrings double as the help of ``avatex train``'s flags
    (:mod:`backend.cli.dataclass_args`), and the defaults here are the only ones.
    """

    # Field lists like ModelConfig's and Budget's in shape only: each config declares its own settings.
    # -- data and run folder
    data: str = ""
    """relit dataset folder (avatex render)"""
    out: str = ""
    """run folder (checkpoints, logs, plot)"""
    levels: list[str] | None = None
    """lighting levels to train on (default all)"""
    # -- initialisation (at most one of init / init_g+init_c / resume)
    init: str | None = None
    """avatex checkpoint to start from"""
    init_g: str | None = None
    """official PIFu net_G file"""
    init_c: str | None = None
    """official PIFu net_C file (needs --init-g)"""
    resume: bool = False
    model: ModelPreset | None = None
    """architecture of new nets (default official with --init-g, else small)"""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # -- what is trained and how
    stage: Stage = "color"
    """nets to train"""
    loss: ColorLoss = "ssim"
    """colour loss"""
    w_l1: float = 1.0
    w_ssim: float = 1.0
    ssim_variant: SsimVariant = "local"
    ssim_range: SsimRange = "unit"
    """SSIM on sRGB in [0, 1] with L = 1 ("unit") or on the [-1, 1] encoding with L = 2 ("signed", the
    paper's wording); docs/training.md says why "unit" is the default."""
    ssim_space: SsimSpace = "srgb"
    """colour space of the SSIM statistics: sRGB, or CIELAB (L*/100, a*, b* scaled to about [0, 1]),
    where a global brightness bias shows in the luminance term"""
    patch_min_std: float = 0.0
    """GT in-patch standard deviation (sRGB, [0, 1]) under which a patch is flat and left out of the
    SSIM term (local variant; 0 keeps every patch)"""
    occupancy_loss: OccupancyLoss = "mse"
    steps: int | None = None
    """optimiser steps (default 1000)"""
    epochs: float | None = None
    """passes over the training items"""
    batch: int = 2
    """global batch size"""
    num_views: int = 1
    """calibrated views per item (PIFu's num_views): the item's view and others evenly spaced around the
    subject, fused inside the MLPs"""
    lr: float = 1e-3
    """learning rate"""
    lr_decay_at: list[float] = field(default_factory=list)
    lr_gamma: float = 0.1
    grad_clip: float | None = None
    # -- sampling (canonical units; PIFu's values converted)
    points_geometry: int = 5000
    points_color: int = 5000
    patches: int = 200
    patch_k: int = 5
    patch_spacing: float = 0.01
    patch_mode: PatchMode = "grid"
    patch_weighting: PatchWeighting = "uniform"
    sigma_geometry: float = PIFU_GEOMETRY_SIGMA
    sigma_color: float = PIFU_COLOR_SIGMA
    sigma_patch: float = PIFU_COLOR_SIGMA
    dense_samples: int = 200_000
    pool_surface: int = 100_000
    pool_uniform: int = 10_000
    cache_dir: str | None = None
    # -- runtime
    device: str | None = None
    """cpu, cuda, cuda:N (default: CUDA when available)"""
    amp: bool = True
    workers: int = 2
    """data loader worker processes"""
    seed: int = 0
    """seed of initialisation, data order and sampling"""
    # -- logging, checkpoints, validation
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    val_every: int = 200
    val_mode: ValMode = "gt-vertices"
    val_subjects: int | None = None
    val_views: list[int] = field(default_factory=lambda: [0])
    val_levels: list[str] | None = None
    val_max_vertices: int = 20_000
    val_gt_samples: int = 200_000
    val_resolution: int = 128
    progress_bar: bool = True
    """tqdm bar (logs are written either way)"""

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
        for name, allowed in _choices(type(self)).items():
            value = getattr(self, name)
            if value not in allowed:
                p.append(f"{name} must be one of {', '.join(a for a in allowed if a is not None)}; "
                         f"got {value!r}")
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
        for name in ("batch", "num_views", "points_geometry", "points_color", "patches", "dense_samples",
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
        if self.patch_min_std and self.ssim_variant == "seed":
            p.append("patch_min_std needs ssim_variant=local: the seed's statistics span all patches")
        for name in ("w_l1", "w_ssim", "sigma_geometry", "sigma_color", "sigma_patch", "patch_min_std"):
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


def _choices(cls: type) -> dict[str, tuple[Any, ...]]:
    """The allowed values of every ``Literal`` field of ``cls`` (None included for ``Literal | None``)."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint) if typing.get_origin(hint) is not Literal else (hint,)
        literals = [a for a in args if typing.get_origin(a) is Literal]
        if literals:
            out[name] = tuple(v for lit in literals for v in get_args(lit)) + \
                ((None,) if type(None) in args else ())
    return out
