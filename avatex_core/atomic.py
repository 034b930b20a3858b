"""Atomic file writes: write to a temporary name in the same folder, fsync, then rename.

A reader never sees a half-written file, and a killed writer leaves at most a ``*.tmp-*`` file that no
reader trusts. Standard library only: the Blender renderer imports this module too.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TMP_MARK = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``.

    The temporary name keeps the final suffix, so writers that choose a format by extension (PIL,
    trimesh, Blender) still do the right thing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + TMP_MARK, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; give the final file the usual permissions (0666 minus the umask).
    os.chmod(tmp, 0o666 & ~_umask())
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync_file(tmp_path)
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def write_with(path: str | os.PathLike, writer: Callable[[IO[bytes]], None]) -> None:
    """Call ``writer(file_object)`` on a temporary file, then move it into place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer(fh)


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete ``*.tmp-*`` leftovers of killed writers under ``folder``; returns how many."""
    count = 0
    for p in Path(folder).rglob(f"*{TMP_MARK}*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            count += 1
    return count


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
