"""Lighting levels: their definitions, per-image sampling, and the calibration of Blender's lights.

Pure numpy + stdlib, so the same code decides the light of an image in the renderer, in tests and in a
re-render from a stored record.

**Levels** (docs/dataset.md). A level is a distribution. Point levels are centred on the paper's settings
(point-light position in the camera frame, ambient, diffuse):

=============  ===============  =======  =======
level          position         ambient  diffuse
=============  ===============  =======  =======
wild           (1, 1, 0.4)      0.3      0.7
intermediate   (0, 0, 0.4)      0.45     0.6
clear          (0, 0, 1.0)      0.6      0.4
=============  ===============  =======  =======

Per image the position is jittered on a sphere sector (a cone of ``position_jitter_deg`` around the
centre direction, radius scaled by ``1 ± distance_jitter``) and ambient / diffuse are drawn uniformly
from their ranges. HDRI levels light the subject with one of Blender's bundled studio-light
environments, randomly rotated about the up axis, at a brightness drawn from a range.

**Units.** A position is given in the view's camera frame (x right, y up, z toward the camera) in
*canonical units*: the subject is 1.7578 units tall (docs/architecture.md), within 3 % of the metres of a
1.7 m person, so the paper's numbers (metres in its own normalised renders) are used as they are.

**Calibration** (derived in docs/dataset.md, checked by tests on a white sphere). Ambient and diffuse
are sRGB output values, as in the paper's Phong shading: a white surface facing the light renders
``ambient + diffuse`` and one facing away renders ``ambient``, with view transform Standard. Blender
adds light linearly, so

* the world is a uniform colour of linear radiance ``A = srgb_to_linear(ambient)``: a white Lambertian
  surface that sees the whole sky reflects exactly ``A``;
* the point light adds ``D = srgb_to_linear(ambient + diffuse) - A`` at normal incidence. A Cycles
  point light of power ``P`` watts has radiant intensity ``P / 4π``; with the paper's constant falloff
  (a Light Falloff node, so that distance does not dim it) it gives irradiance ``P / 4π`` and a white
  diffuse surface reflects ``P / 4π²``. Hence ``P = 4π² D``. With quadratic falloff (EEVEE, which has
  no light nodes) the same holds at the distance ``d`` from the light to the canonical origin:
  ``P = 4π² d² D``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import color

KINDS = ("point", "hdri")
PAPER_LEVELS = ("wild", "intermediate", "clear")
"""The three levels of the paper's tables, in their order: the default of every render and evaluation."""
FALLOFFS = ("constant", "quadratic")


class LevelError(ValueError):
    """A lighting-level definition is invalid; the message names the level and the field."""


@dataclass(frozen=True)
class LevelSpec:
    """A lighting level: a distribution of lights, sampled once per image."""

    name: str
    kind: str = "point"
    # point levels
    position: tuple[float, float, float] = (0.0, 0.0, 1.0)
    position_jitter_deg: float = 0.0
    distance_jitter: float = 0.0
    ambient: tuple[float, float] = (0.5, 0.5)
    diffuse: tuple[float, float] = (0.5, 0.5)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    radius: float = 0.0
    falloff: str = "constant"
    # hdri levels
    environments: tuple[str, ...] = ()
    brightness: tuple[float, float] = (0.5, 0.5)
    rotation_deg: tuple[float, float] = (0.0, 360.0)
    description: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "hdri":
            return {"kind": "hdri", "environments": list(self.environments),
                    "brightness": list(self.brightness), "rotation_deg": list(self.rotation_deg)}
        return {"kind": "point", "position": list(self.position),
                "position_jitter_deg": self.position_jitter_deg, "distance_jitter": self.distance_jitter,
                "ambient": list(self.ambient), "diffuse": list(self.diffuse), "color": list(self.color),
                "radius": self.radius, "falloff": self.falloff}


BUILTIN_LEVELS: dict[str, LevelSpec] = {
    "wild": LevelSpec("wild", position=(1.0, 1.0, 0.4), position_jitter_deg=15.0, distance_jitter=0.1,
                      ambient=(0.25, 0.35), diffuse=(0.6, 0.8),
                      description="strong side light from the upper right, dark shadows"),
    "intermediate": LevelSpec("intermediate", position=(0.0, 0.0, 0.4), position_jitter_deg=15.0,
                              distance_jitter=0.1, ambient=(0.4, 0.5), diffuse=(0.5, 0.7),
                              description="near frontal light"),
    "clear": LevelSpec("clear", position=(0.0, 0.0, 1.0), position_jitter_deg=15.0, distance_jitter=0.1,
                       ambient=(0.55, 0.65), diffuse=(0.35, 0.45),
                       description="soft frontal light, strong ambient"),
    "hdri": LevelSpec("hdri", kind="hdri", environments=(), brightness=(0.45, 0.7),
                      rotation_deg=(0.0, 360.0),
                      description="Blender's bundled studio-light environments, random rotation"),
}


def _range(value: Any, what: str, lo: float = -math.inf, hi: float = math.inf) -> tuple[float, float]:
    if isinstance(value, int | float):
        pair = (float(value), float(value))
    elif isinstance(value, list | tuple) and len(value) == 2:
        pair = (float(value[0]), float(value[1]))
    else:
        raise LevelError(f"{what} must be a number or [min, max], got {value!r}")
    if pair[0] > pair[1] or pair[0] < lo or pair[1] > hi or not all(map(math.isfinite, pair)):
        raise LevelError(f"{what} must be an increasing range within [{lo}, {hi}], got {list(pair)}")
    return pair


def _scalar(value: Any, what: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= float(value) <= hi:
        raise LevelError(f"{what} must be a number within [{lo}, {hi}], got {value!r}")
    return float(value)


def _vec3(value: Any, what: str) -> tuple[float, float, float]:
    if not (isinstance(value, list | tuple) and len(value) == 3):
        raise LevelError(f"{what} must be a list of 3 numbers, got {value!r}")
    out = tuple(float(v) for v in value)
    if not all(map(math.isfinite, out)):
        raise LevelError(f"{what} must be finite, got {value!r}")
    return out  # type: ignore[return-value]


_POINT_KEYS = {"kind", "position", "position_jitter_deg", "distance_jitter", "ambient", "diffuse", "color",
               "radius", "falloff", "description"}
_HDRI_KEYS = {"kind", "environments", "brightness", "rotation_deg", "description"}


def level_from_dict(name: str, d: dict[str, Any]) -> LevelSpec:
    """Build and validate a level from its config-file table (see docs/dataset.md)."""
    if not isinstance(d, dict):
        raise LevelError(f"level {name!r}: expected a table of settings, got {type(d).__name__}")
    kind = d.get("kind", "point")
    if kind not in KINDS:
        raise LevelError(f"level {name!r}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = set(d) - (_POINT_KEYS if kind == "point" else _HDRI_KEYS)
    if unknown:
        raise LevelError(f"level {name!r}: unknown setting(s) {', '.join(sorted(unknown))} for kind {kind!r}")
    desc = str(d.get("description", ""))
    try:
        if kind == "hdri":
            envs = d.get("environments", [])
            if isinstance(envs, str):
                envs = [envs]
            return LevelSpec(name, kind="hdri", environments=tuple(str(e) for e in envs),
                             brightness=_range(d.get("brightness", [0.45, 0.7]), "brightness", 0.0, 4.0),
                             rotation_deg=_range(d.get("rotation_deg", [0.0, 360.0]), "rotation_deg"),
                             description=desc)
        position = _vec3(d.get("position", [0.0, 0.0, 1.0]), "position")
        if np.linalg.norm(position) < 1e-6:
            raise LevelError("position must not be the origin (the light needs a direction)")
        falloff = d.get("falloff", "constant")
        if falloff not in FALLOFFS:
            raise LevelError(f"falloff must be one of {', '.join(FALLOFFS)}, got {falloff!r}")
        color = _vec3(d.get("color", [1.0, 1.0, 1.0]), "color")
        if min(color) < 0:
            raise LevelError(f"color must be non-negative, got {list(color)}")
        return LevelSpec(
            name, kind="point", position=position,
            position_jitter_deg=_scalar(d.get("position_jitter_deg", 0.0), "position_jitter_deg", 0.0, 180.0),
            distance_jitter=_scalar(d.get("distance_jitter", 0.0), "distance_jitter", 0.0, 0.99),
            ambient=_range(d.get("ambient", 0.5), "ambient", 0.0, 4.0),
            diffuse=_range(d.get("diffuse", 0.5), "diffuse", 0.0, 4.0),
            color=color, radius=_scalar(d.get("radius", 0.0), "radius", 0.0, 10.0),
            falloff=falloff, description=desc)
    except LevelError as exc:
        raise LevelError(f"level {name!r}: {exc}") from None


def load_level_config(path: str | Path) -> dict[str, LevelSpec]:
    """Read user-defined levels from a TOML or JSON file: ``[levels.NAME]`` tables / ``{"levels": {...}}``."""
    path = Path(path)
    if not path.is_file():
        raise LevelError(f"light config not found: {path}")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            import tomllib

            data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # tomllib.TOMLDecodeError and JSONDecodeError
        raise LevelError(f"could not parse light config {path}: {exc}") from None
    levels = data.get("levels") if isinstance(data, dict) else None
    if not isinstance(levels, dict) or not levels:
        raise LevelError(f"light config {path} defines no levels (expected [levels.NAME] tables)")
    return {name: level_from_dict(name, spec) for name, spec in levels.items()}


def image_seed(dataset_seed: int, subject: str, view: int, level: str) -> int:
    """The seed of one image: drives its light sample and ``cycles.seed``; stable across runs and shards."""
    digest = hashlib.sha256(f"{dataset_seed}:{subject}:{view}:{level}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _cone_direction(center: np.ndarray, half_angle_deg: float, rng: np.random.Generator) -> np.ndarray:
    """A direction uniform on the spherical cap of ``half_angle_deg`` around ``center`` (unit vector)."""
    c = center / np.linalg.norm(center)
    if half_angle_deg <= 0:
        return c
    cos_a = 1.0 - rng.random() * (1.0 - math.cos(math.radians(half_angle_deg)))
    sin_a = math.sqrt(max(0.0, 1.0 - cos_a * cos_a))
    phi = 2.0 * math.pi * rng.random()
    helper = np.array([1.0, 0.0, 0.0]) if abs(c[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(c, helper)
    u /= np.linalg.norm(u)
    v = np.cross(c, u)
    return cos_a * c + sin_a * (math.cos(phi) * u + math.sin(phi) * v)


def sample_light(spec: LevelSpec, seed: int, environments: list[str] | None = None) -> dict[str, Any]:
    """Draw one image's light from a level. The returned dict is what the record stores as ``light``.

    ``environments`` lists the HDRI names available when the level does not name its own.
    """
    rng = np.random.default_rng(seed)
    if spec.kind == "hdri":
        choices = list(spec.environments) or list(environments or [])
        if not choices:
            raise LevelError(f"level {spec.name!r}: no HDRI environments available")
        env = choices[int(rng.integers(len(choices)))]
        return {"level": spec.name, "kind": "hdri", "environment": env,
                "rotation_deg": round(float(rng.uniform(*spec.rotation_deg)), 6),
                "brightness": round(float(rng.uniform(*spec.brightness)), 6)}
    center = np.asarray(spec.position, dtype=np.float64)
    direction = _cone_direction(center, spec.position_jitter_deg, rng)
    distance = np.linalg.norm(center) * rng.uniform(1.0 - spec.distance_jitter, 1.0 + spec.distance_jitter)
    position = direction * distance
    return {"level": spec.name, "kind": "point",
            "position_camera": [round(float(x), 6) for x in position],
            "ambient": round(float(rng.uniform(*spec.ambient)), 6),
            "diffuse": round(float(rng.uniform(*spec.diffuse)), 6),
            "color": [float(c) for c in spec.color], "radius": float(spec.radius), "falloff": spec.falloff}


LIGHT_CLEARANCE = 0.1
"""Canonical units a point light keeps beyond the subject's extent along the light's direction."""


def keep_clear_of_subject(light: dict[str, Any], camera_vertices: np.ndarray,
                          clearance: float = LIGHT_CLEARANCE) -> dict[str, Any]:
    """Push a point light that would sit inside the subject out along its direction.

    The paper's near lights (intermediate: 0.4 units in front) fall inside wide poses seen from the side
    (an A-pose's hands reach ~0.6). The light then moves to ``clearance`` beyond the subject's furthest
    vertex along its direction; the sampled position is kept in the record as ``position_sampled``.
    ``camera_vertices`` are the subject's vertices in the view's camera frame.
    """
    if light["kind"] != "point" or not len(camera_vertices):
        return light
    p = np.asarray(light["position_camera"], dtype=np.float64)
    d = p / np.linalg.norm(p)
    need = float(np.max(np.asarray(camera_vertices, dtype=np.float64) @ d)) + clearance
    if np.linalg.norm(p) >= need:
        return light
    out = dict(light)
    out["position_sampled"] = light["position_camera"]
    out["position_camera"] = [round(float(x), 6) for x in d * need]
    return out


def srgb_to_linear(x: Any) -> np.ndarray:
    """sRGB EOTF in float64, extended above 1 with the same power law (over-bright levels over-expose)."""
    return color.srgb_to_linear(x, clip=False, dtype=np.float64)


def linear_to_srgb(x: Any) -> np.ndarray:
    """The inverse of :func:`srgb_to_linear`, extended the same way."""
    return color.linear_to_srgb(x, clip=False, dtype=np.float64)


@dataclass(frozen=True)
class PointCalibration:
    """Blender values of a point level: world colour (linear RGB), light power (W) and colour."""

    world_color: tuple[float, float, float]
    energy: float
    light_color: tuple[float, float, float]


def calibrate_point(ambient: float, diffuse: float, color: Any = (1.0, 1.0, 1.0),
                    falloff: str = "constant", distance: float = 1.0) -> PointCalibration:
    """World and point-light settings so that white renders ambient (away) / ambient+diffuse (facing)."""
    a_lin = float(srgb_to_linear(ambient))
    target = ambient + diffuse * np.asarray(color, dtype=np.float64)
    d_lin = np.maximum(srgb_to_linear(target) - a_lin, 0.0)
    peak = float(d_lin.max())
    if peak <= 0.0:
        return PointCalibration((a_lin,) * 3, 0.0, (1.0, 1.0, 1.0))
    power = 4.0 * math.pi ** 2 * peak
    if falloff == "quadratic":
        power *= distance ** 2
    return PointCalibration((a_lin,) * 3, power, tuple(float(c) for c in d_lin / peak))


def environment_strength(brightness: float, mean_radiance: float) -> float:
    """World strength making a white diffuse surface reflect ``brightness`` (sRGB) on average.

    A white Lambertian surface under an environment of mean radiance ``m`` (averaged over the sphere)
    reflects ``m`` averaged over all its orientations, so scaling by ``srgb_to_linear(b) / m`` hits ``b``.
    """
    if not mean_radiance > 0:
        raise LevelError("HDRI environment is black (mean radiance 0)")
    return float(srgb_to_linear(brightness)) / mean_radiance
