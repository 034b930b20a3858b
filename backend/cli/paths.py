"""Path arguments are relative to the directory the command was started in: resolved once, here.

Every subcommand names its path options in ``PATHS`` (the ``dest`` of each); :func:`resolve` turns
their values into absolute paths before the command runs, so nothing later depends on the current
directory: not the worker processes (Blender renders, audits) that run elsewhere, not the server that
receives file names, not records that store a path (``subject.json`` ``source``, run configs) and are
read again from another directory.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def absolute(value: Any) -> Any:
    """``value`` (str, Path, a list of them, or None) as absolute path(s) of the same type; ``~`` expands.

    ``os.path.abspath`` rather than ``Path.resolve``: symbolic links in the user's path stay as typed.
    """
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return type(value)(absolute(v) for v in value)
    text = os.path.abspath(os.path.expanduser(os.fspath(value)))
    return Path(text) if isinstance(value, Path) else text


def resolve(args: argparse.Namespace, names: tuple[str, ...]) -> argparse.Namespace:
    """Make the path arguments ``names`` of ``args`` absolute, in place; returns ``args``."""
    for name in names:
        if getattr(args, name, None) is not None:
            setattr(args, name, absolute(getattr(args, name)))
    return args
