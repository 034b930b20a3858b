"""Argument and array schemas of the server's operations, and their validation.

Every operation declares its JSON arguments (:class:`Arg`) and the arrays it accepts
(:class:`ArraySpec`). The server checks both before a handler runs, so handlers see only well-typed
values with defaults filled in, and a client that sends something wrong gets a ``bad_args`` /
``bad_array`` error that names the operation, the argument and what was expected. The same schemas
are published by ``hello`` and written out in docs/protocol.md.

The same :class:`Arg` machinery bounds what *files* can set: :data:`TRAIN_CONFIG` (a ``train.start``
config, including TOML files it names) and :data:`MODEL_CONFIG` (the architecture stored in a
checkpoint, or a training run's ``model_overrides``). Every field has a type and a range, so a hostile
or corrupt value is refused with a message naming the field before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.errors import InputError


class ArgumentError(InputError):
    """An operation's arguments do not match its schema."""

    code = "bad_args"


class ArraySpecError(InputError):
    """An operation's arrays are not the ones it accepts (names, dtypes, shapes)."""

    code = "bad_array"


_KIND_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "dict": "an object", "list": "a list", "any": "any JSON value"}


@dataclass(frozen=True)
class Arg:
    """One JSON argument: its kind and bounds.

    ``kind`` is one of str, int, float, bool, dict, list, any; a tuple of kinds allows several (e.g.
    ``("bool", "str")``). ``minimum``/``maximum`` bound numbers, ``max_len`` bounds strings and lists
    (characters / items), ``choices`` enumerates allowed values, ``items`` is the spec of every list
    item, ``fields`` the schema of a dict's keys.
    """

    kind: str | tuple[str, ...]
    required: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    max_len: int | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""
    items: Arg | None = None
    fields: dict[str, Arg] | None = None

    def describe(self) -> str:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        text = " or ".join(_KIND_NAMES[k] for k in kinds)
        if self.items is not None:
            text += f" of {self.items.describe()}"
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.minimum is not None and self.maximum is not None:
            text += f" in [{_num(self.minimum)}, {_num(self.maximum)}]"
        elif self.minimum is not None:
            text += f" ≥ {_num(self.minimum)}"
        elif self.maximum is not None:
            text += f" ≤ {_num(self.maximum)}"
        if self.max_len is not None:
            text += f" (at most {self.max_len} {'characters' if self.kind == 'str' else 'items'})"
        return text

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind if isinstance(self.kind, str) else list(self.kind),
                             "required": self.required, "doc": self.doc}
        for key in ("default", "minimum", "maximum", "max_len", "choices"):
            value = getattr(self, key)
            if value is not None:
                d[key] = list(value) if key == "choices" else value
        if self.items is not None:
            d["items"] = self.items.to_dict()
        if self.fields is not None:
            d["fields"] = {k: a.to_dict() for k, a in self.fields.items()}
        return d


@dataclass(frozen=True)
class ArraySpec:
    """An array an operation accepts.

    ``shape`` has one entry per dimension: ``None`` for any size, an int for an exact size, or a tuple
    of allowed sizes.
    """

    dtypes: tuple[str, ...]
    shape: tuple[int | None | tuple[int, ...], ...]
    required: bool = False
    doc: str = ""

    def describe(self) -> str:
        dims = ", ".join("N" if d is None else str(d) if isinstance(d, int) else "|".join(map(str, d))
                         for d in self.shape)
        return f"{'/'.join(self.dtypes)} ({dims})"

    def to_dict(self) -> dict[str, Any]:
        return {"dtypes": list(self.dtypes),
                "shape": [d if not isinstance(d, tuple) else list(d) for d in self.shape],
                "required": self.required, "doc": self.doc}


def validate_args(op: str, schema: dict[str, Arg], args: dict[str, Any]) -> dict[str, Any]:
    """``args`` checked against ``schema``, with defaults filled in; :class:`ArgumentError` otherwise."""
    return _validate(op, "argument", schema, args, fill=True)


def validate_fields(what: str, schema: dict[str, Arg], values: Any) -> dict[str, Any]:
    """A config (from a request or a file) checked against ``schema``; absent fields stay absent.

    ``what`` names the config in messages, e.g. ``"train.start: config"`` or ``"ckpt.pt: config"``.
    """
    if not isinstance(values, dict):
        raise ArgumentError(f"{what} must be an object of fields, got {_type_name(values)}")
    return _validate(what, "field", schema, values, fill=False)


def _validate(op: str, noun: str, schema: dict[str, Arg], args: dict[str, Any], fill: bool) -> dict[str, Any]:
    unknown = sorted(set(args) - set(schema), key=str)
    if unknown:
        expected = ", ".join(schema) or f"no {noun}s"
        raise ArgumentError(f"{op}: unknown {noun}(s) {', '.join(map(repr, unknown[:8]))} "
                            f"(expected: {expected})")
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        if name not in args or args[name] is None:
            if spec.required:
                raise ArgumentError(f"{op}: {noun} {name!r} is required ({spec.describe()})")
            if fill:
                out[name] = spec.default
            elif name in args:
                out[name] = None
            continue
        out[name] = _check_value(op, f"{noun} {name!r}", spec, args[name])
    return out


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _check_value(op: str, where: str, spec: Arg, value: Any) -> Any:
    def fail() -> ArgumentError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return ArgumentError(f"{op}: {where} must be {spec.describe()}, got {shown}")

    if isinstance(spec.kind, tuple):
        for kind in spec.kind:
            try:
                return _check_value(op, where, dataclasses.replace(spec, kind=kind), value)
            except ArgumentError:
                continue
        raise fail()
    kind = spec.kind
    is_bool = isinstance(value, bool)
    if kind == "str":
        ok = isinstance(value, str) and "\x00" not in value
    elif kind == "int":
        ok = isinstance(value, int) and not is_bool
    elif kind == "float":
        ok = isinstance(value, int | float) and not is_bool and math.isfinite(value)
        value = float(value) if ok else value
    elif kind == "bool":
        ok = is_bool
    elif kind == "dict":
        ok = isinstance(value, dict)
    elif kind == "list":
        ok = isinstance(value, list)
    else:
        ok = True
    if not ok:
        raise fail()
    if spec.choices is not None and value not in spec.choices:
        raise fail()
    if kind in ("int", "float") and (
            (spec.minimum is not None and value < spec.minimum)
            or (spec.maximum is not None and value > spec.maximum)):
        raise fail()
    if spec.max_len is not None and kind in ("str", "list") and len(value) > spec.max_len:
        raise fail()
    if kind == "list" and spec.items is not None:
        value = [_check_value(op, f"{where}[{i}]", spec.items, v) for i, v in enumerate(value)]
    if kind == "dict" and spec.fields is not None:
        value = _validate(f"{op}: {where}", "field", spec.fields, value, fill=False)
    return value


def validate_arrays(op: str, specs: dict[str, ArraySpec],
                    arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` checked against ``specs`` (names, dtypes, shapes); :class:`ArraySpecError` otherwise."""
    unknown = sorted(set(arrays) - set(specs))
    if unknown:
        expected = ", ".join(f"{n}: {s.describe()}" for n, s in specs.items()) or "no arrays"
        raise ArraySpecError(f"{op}: unexpected array(s) {', '.join(map(repr, unknown))} "
                             f"(accepts {expected})")
    for name, spec in specs.items():
        arr = arrays.get(name)
        if arr is None:
            if spec.required:
                raise ArraySpecError(f"{op}: array {name!r} is required ({spec.describe()})")
            continue
        if arr.dtype.name not in spec.dtypes or not _shape_ok(arr.shape, spec.shape):
            raise ArraySpecError(f"{op}: array {name!r} must be {spec.describe()}, got "
                                 f"{arr.dtype.name} {list(arr.shape)}")
    return arrays


def _shape_ok(shape: tuple[int, ...], pattern: tuple[int | None | tuple[int, ...], ...]) -> bool:
    if len(shape) != len(pattern):
        return False
    for size, want in zip(shape, pattern, strict=True):
        if want is None:
            continue
        if isinstance(want, int) and size != want:
            return False
        if isinstance(want, tuple) and size not in want:
            return False
    return True


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)



# --------------------------------------------------------------------------------------------------
# what files (and training requests) may set


def _count(maximum: int, minimum: int = 1) -> Arg:
    return Arg("int", minimum=minimum, maximum=maximum)


def _real(maximum: float, minimum: float = 0.0) -> Arg:
    return Arg("float", minimum=minimum, maximum=maximum)


_NAME = Arg("str", max_len=64)
_PATH = Arg("str", max_len=4096)
_WIDTHS = Arg("list", max_len=16, items=_count(8192))

# The architecture of a PIFu pair (backend.models.ModelConfig). The ranges hold every published and
# preset size with room to spare; the parameter count is checked on top of them before nets are built.
MODEL_CONFIG: dict[str, Arg] = {
    "load_size": _count(2048, 16), "num_stack": _count(16), "hg_depth": _count(8),
    "hg_width": _count(1024, 16), "hourglass_dim": _count(1024), "norm_groups": _count(256),
    "upsample": _NAME, "mlp_dim": _WIDTHS, "mlp_residual": Arg("bool"), "color_ngf": _count(512),
    "color_blocks": _count(32), "norm_color": _NAME, "mlp_dim_color": _WIDTHS,
    "z_size": _real(1e6, 1e-6), "extra": Arg("dict"),
}

# A training run's settings (backend.train.TrainConfig): types and upper bounds here, the finer rules
# (choices, relations between fields) in TrainConfig.validate.
TRAIN_CONFIG: dict[str, Arg] = {
    "data": _PATH, "out": _PATH, "config": _PATH, "levels": Arg("list", max_len=64, items=_NAME),
    "init": _PATH, "init_g": _PATH, "init_c": _PATH, "resume": Arg(("bool", "str"), max_len=4096),
    "model": _NAME, "model_overrides": Arg("dict", fields=MODEL_CONFIG),
    "stage": _NAME, "loss": _NAME, "w_l1": _real(1e3), "w_ssim": _real(1e3), "ssim_variant": _NAME,
    "ssim_range": _NAME, "ssim_space": _NAME, "patch_min_std": _real(1.0),
    "occupancy_loss": _NAME, "steps": _count(100_000_000),
    "epochs": _real(1e6, 1e-9), "batch": _count(64), "num_views": _count(16), "lr": _real(10.0, 1e-12),
    "lr_decay_at": Arg("list", max_len=32, items=_real(1.0)), "lr_gamma": _real(1.0, 1e-12),
    "grad_clip": _real(1e9, 1e-12), "points_geometry": _count(200_000), "points_color": _count(200_000),
    "patches": _count(20_000), "patch_k": _count(16, 2), "patch_spacing": _real(1.0, 1e-9),
    "patch_mode": _NAME, "patch_weighting": _NAME, "sigma_geometry": _real(1.0),
    "sigma_color": _real(1.0), "sigma_patch": _real(1.0), "dense_samples": _count(2_000_000),
    "pool_surface": _count(5_000_000), "pool_uniform": _count(1_000_000), "cache_dir": _PATH,
    "device": _NAME, "amp": Arg("bool"), "workers": _count(8, 0), "seed": _count(2**63 - 1, 0),
    "log_every": _count(10**9), "checkpoint_every": _count(10**9), "keep_checkpoints": _count(1000),
    "val_every": _count(10**9), "val_mode": _NAME, "val_subjects": _count(100_000, 0),
    "val_views": Arg("list", max_len=360, items=_count(100_000, 0)),
    "val_levels": Arg("list", max_len=64, items=_NAME), "val_max_vertices": _count(2_000_000),
    "val_gt_samples": _count(5_000_000), "val_resolution": _count(512, 16), "progress_bar": Arg("bool"),
}
