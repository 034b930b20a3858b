"""What a relit dataset is rendered with: views, lighting levels, engine and sampling (pure Python).

A :class:`RenderSettings` has two parts. The *identity* (``identity()``) fixes what the images are:
views, resolution, levels and their definitions, engine, samples, seed. It is stored in the manifest,
and every later run, resume or shard writing into the same dataset must have the same identity. The
rest (threads, device, worker split) only changes how fast the same images are made.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field, replace
from typing import Any

from .lighting import BUILTIN_LEVELS, PAPER_LEVELS, LevelSpec, level_from_dict, load_level_config

ENGINES = ("cycles", "eevee")
DEVICES = ("auto", "cpu", "gpu")
UP_AXES = ("auto", "y", "z")
CAMERA_DISTANCE = 10.0
"""Distance of the orthographic camera from the canonical origin (the subject lies in [-1, 1]^3)."""

_LEVEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class SettingsError(ValueError):
    """Invalid render settings; the message names the setting and the accepted values."""


@dataclass(frozen=True)
class View:
    """One camera of the orbit: index ``k`` (the folder ``v{k:03d}``), yaw and pitch in degrees."""

    index: int
    yaw: float
    pitch: float

    @property
    def name(self) -> str:
        return f"v{self.index:03d}"

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "yaw": self.yaw, "pitch": self.pitch}


@dataclass(frozen=True)
class RenderSettings:
    """Everything the renderer needs besides the subjects and the output folder."""

    views: int = 45
    step_deg: float = 8.0
    pitches: tuple[float, ...] = (0.0,)
    resolution: int = 512
    levels: tuple[str, ...] = PAPER_LEVELS
    level_defs: dict[str, LevelSpec] = field(default_factory=lambda: dict(BUILTIN_LEVELS))
    engine: str = "cycles"
    samples: int = 16
    albedo_samples: int = 16
    denoise: bool = True
    seed: int = 0
    up: str = "auto"
    test_fraction: float = 0.1
    normals: bool = False
    """Also render front/back normal maps per view (PIFuHD's normal-net targets)."""
    # Speed only (not part of the identity):
    device: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.views <= 3600:
            raise SettingsError(f"views must be in 1..3600, got {self.views}")
        if not self.step_deg > 0:
            raise SettingsError(f"step must be > 0 degrees, got {self.step_deg}")
        if not self.pitches or any(not -89.0 <= p <= 89.0 for p in self.pitches):
            raise SettingsError(f"pitch angles must be within [-89, 89] degrees, got {list(self.pitches)}")
        if not 8 <= self.resolution <= 8192:
            raise SettingsError(f"resolution must be in 8..8192 pixels, got {self.resolution}")
        if self.engine not in ENGINES:
            raise SettingsError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.device not in DEVICES:
            raise SettingsError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.up not in UP_AXES:
            raise SettingsError(f"up must be one of {', '.join(UP_AXES)}, got {self.up!r}")
        if self.samples < 1 or self.albedo_samples < 1:
            raise SettingsError("samples must be >= 1")
        if not 0.0 <= self.test_fraction <= 1.0:
            raise SettingsError(f"test fraction must be in [0, 1], got {self.test_fraction}")
        if not self.levels:
            raise SettingsError("at least one lighting level is needed")
        if len(set(self.levels)) != len(self.levels):
            raise SettingsError(f"lighting levels are listed twice: {list(self.levels)}")
        for name in self.levels:
            if name not in self.level_defs:
                known = ", ".join(sorted(self.level_defs))
                raise SettingsError(f"unknown lighting level {name!r}; known levels: {known} "
                                    "(define more in a --light-config file)")
            if not _LEVEL_NAME.match(name) or name == "albedo":
                raise SettingsError(f"level name {name!r} must be lower-case letters, digits, '_' or '-' "
                                    "(and not 'albedo')")

    def view_list(self) -> list[View]:
        """All views, pitch-major: index ``p * views + k`` has pitch ``pitches[p]``, yaw ``k * step``."""
        out = []
        for p_i, pitch in enumerate(self.pitches):
            for k in range(self.views):
                out.append(View(p_i * self.views + k, float(k * self.step_deg % 360.0), float(pitch)))
        return out

    def identity(self) -> dict[str, Any]:
        """The settings that decide the pixels; equal identities render identical datasets."""
        return {
            "views": self.views,
            "step_deg": float(self.step_deg),
            "pitches": [float(p) for p in self.pitches],
            "resolution": self.resolution,
            "levels": list(self.levels),
            "level_defs": {name: self.level_defs[name].to_dict() for name in self.levels},
            "engine": self.engine,
            "samples": self.samples,
            "albedo_samples": self.albedo_samples,
            "denoise": self.denoise,
            "seed": self.seed,
            "up": self.up,
            "test_fraction": float(self.test_fraction),
            "camera_distance": CAMERA_DISTANCE,
            **({"normals": True} if self.normals else {}),   # absent when off: older identities hold
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.identity(), "device": self.device, "threads": self.threads}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RenderSettings:
        defs = dict(BUILTIN_LEVELS)
        for name, spec in (d.get("level_defs") or {}).items():
            defs[name] = level_from_dict(name, spec)
        return cls(
            views=int(d.get("views", 45)), step_deg=float(d.get("step_deg", 8.0)),
            pitches=tuple(float(p) for p in d.get("pitches", (0.0,))),
            resolution=int(d.get("resolution", 512)), levels=tuple(d.get("levels", cls.levels)),
            level_defs=defs, engine=str(d.get("engine", "cycles")), samples=int(d.get("samples", 16)),
            albedo_samples=int(d.get("albedo_samples", 16)), denoise=bool(d.get("denoise", True)),
            seed=int(d.get("seed", 0)), up=str(d.get("up", "auto")),
            test_fraction=float(d.get("test_fraction", 0.1)), normals=bool(d.get("normals", False)),
            device=str(d.get("device", "auto")), threads=int(d.get("threads", 0)),
        )

    def with_(self, **changes: Any) -> RenderSettings:
        return replace(self, **changes)


def settings_from_args(args: argparse.Namespace) -> RenderSettings:
    """The settings that the options of :mod:`.render_options` describe."""
    defs = dict(BUILTIN_LEVELS)
    if args.light_config:
        defs.update(load_level_config(args.light_config))
    levels = tuple(lv.strip() for lv in str(args.levels).split(",") if lv.strip())
    return RenderSettings(views=args.views, step_deg=args.step, pitches=tuple(args.pitch),
                          resolution=args.resolution, levels=levels, level_defs=defs, engine=args.engine,
                          samples=args.samples, albedo_samples=args.albedo_samples,
                          denoise=not args.no_denoise, seed=args.seed, up=args.up,
                          test_fraction=args.test_fraction, normals=bool(getattr(args, "normals", False)),
                          device=args.device, threads=args.threads)
