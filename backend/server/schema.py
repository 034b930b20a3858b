"""Argument and array schemas of the server's operations, and their validation.

Every operation declares its JSON arguments (:class:`Arg`) and the arrays it accepts
(:class:`ArraySpec`). The server checks both before a handler runs, so handlers see only well-typed
values with defaults filled in, and a client that sends something wrong gets a ``bad_args`` /
``bad_array`` error that names the operation, the argument and what was expected. The same schemas
are published by ``hello`` and written out in docs/protocol.md.
"""

from __future__ import annotations

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

    ``kind`` is one of str, int, float, bool, dict, list, any. ``minimum``/``maximum`` bound numbers,
    ``max_len`` bounds strings and lists (characters / items), ``choices`` enumerates allowed values.
    """

    kind: str
    required: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    max_len: int | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def describe(self) -> str:
        text = _KIND_NAMES[self.kind]
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
        d: dict[str, Any] = {"kind": self.kind, "required": self.required, "doc": self.doc}
        for key in ("default", "minimum", "maximum", "max_len", "choices"):
            value = getattr(self, key)
            if value is not None:
                d[key] = list(value) if key == "choices" else value
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
    unknown = sorted(set(args) - set(schema))
    if unknown:
        expected = ", ".join(schema) or "no arguments"
        raise ArgumentError(f"{op}: unknown argument(s) {', '.join(map(repr, unknown))} "
                            f"(expected: {expected})")
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        if name not in args or args[name] is None:
            if spec.required:
                raise ArgumentError(f"{op}: argument {name!r} is required ({spec.describe()})")
            out[name] = spec.default
            continue
        out[name] = _check_value(op, name, spec, args[name])
    return out


def _check_value(op: str, name: str, spec: Arg, value: Any) -> Any:
    def fail() -> ArgumentError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return ArgumentError(f"{op}: argument {name!r} must be {spec.describe()}, got {shown}")

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
