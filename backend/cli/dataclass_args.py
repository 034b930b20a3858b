"""Command-line flags generated from a config dataclass, so the dataclass stays the one source of truth.

:func:`add_fields` adds one flag per named field: ``--name-with-dashes``, its type from the field's
annotation (``int``, ``float``, ``str``, ``list[X]`` as ``nargs="+"``, ``Literal[...]`` as ``choices``,
each optionally ``| None``; ``bool`` as an on/off switch), and its help from the field's attribute
docstring plus the dataclass default. Every flag defaults to None (a switch to "not given"), so
:func:`given` returns only what the user typed and a config file underneath keeps its values.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from typing import Any, Literal


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string literal right after a field), by field name.

    Read from the class source; a class whose source is not available has none.
    """
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _strip_none(hint: Any) -> Any:
    """``X | None`` -> ``X`` (other unions are left as they are)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def argument_spec(hint: Any) -> dict[str, Any]:
    """The ``add_argument`` keywords (type / nargs / choices / action) for a field annotation."""
    hint = _strip_none(hint)
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        return {"choices": choices, "type": type(choices[0])}
    if origin is list:
        (item,) = typing.get_args(hint) or (str,)
        return {"nargs": "+", **argument_spec(item)}
    if hint is bool:
        return {"action": "store_const"}
    if hint in (int, float, str):
        return {"type": hint}
    raise TypeError(f"no command-line form for a field of type {hint!r}")


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def add_fields(parser: argparse.ArgumentParser | argparse._ActionsContainer, cls: type, names: list[str],
               *, metavars: dict[str, str] | None = None, helps: dict[str, str] | None = None) -> None:
    """Add a flag to ``parser`` (a parser, group or mutually exclusive group) for each field in ``names``.

    ``helps`` replaces a field's docstring where the command line wants other words; the default is
    appended from the dataclass unless it is None or empty. A ``bool`` field defaulting to True becomes
    ``--no-name`` (stores False; its help reads "no <docstring>", so write the docstring as a noun
    phrase); one defaulting to False becomes ``--name`` (stores True).
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    docs = field_docs(cls)
    metavars, helps = metavars or {}, helps or {}
    for name in names:
        f = fields[name]
        spec = argument_spec(hints[name])
        default = _default(f)
        text = helps.get(name, docs.get(name, ""))
        flag = "--" + name.replace("_", "-")
        if spec.get("action") == "store_const":
            spec["const"] = not default
            if default:
                flag = "--no-" + name.replace("_", "-")
                text = f"no {text}" if text else text
        elif default not in (None, "", []):
            text = f"{text} (default {_shown(default)})" if text else f"default {_shown(default)}"
        if name in metavars:
            spec["metavar"] = metavars[name]
        parser.add_argument(flag, dest=name, default=None, help=text or None, **spec)


def given(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """The fields among ``names`` that were given on the command line (their flags are not None)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
