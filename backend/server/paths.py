"""Path confinement: every path a client names must resolve under one of the server's ``--root``s.

A client may be Blender on another machine; it must not read ``/etc/shadow`` or write over the
server's files by naming them. The rules, each with its own error message:

* no ``..`` component at all (even one that would stay inside: the intent is suspicious and the
  check stays simple to reason about);
* relative paths are taken relative to each root in turn (the first root where the path exists wins;
  for new files, the first root);
* the *real* path (symlinks followed, ``os.path.realpath``) must lie under a root's real path, so a
  symlink inside a root that points out of it is refused;
* a server without roots accepts no paths at all (clients then send data as arrays).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from backend.errors import InputError

MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255   # one path component (NAME_MAX on Linux, macOS and Windows)


class PathError(InputError):
    """A client-named path breaks the confinement rules."""

    code = "bad_path"


class PathPolicy:
    """Resolves client-named paths under a fixed set of roots."""

    def __init__(self, roots: list[str | os.PathLike]):
        resolved = []
        for root in roots:
            real = Path(os.path.realpath(root))
            if not real.is_dir():
                raise InputError(f"--root {root}: not an existing directory")
            resolved.append(real)
        self.roots: tuple[Path, ...] = tuple(dict.fromkeys(resolved))

    def resolve(self, name: str, *, must_exist: bool = True, kind: str | None = None) -> Path:
        """The real path for ``name``; :class:`PathError` naming the broken rule otherwise.

        ``kind`` is ``"file"`` or ``"dir"`` to also require that type (when the path must exist).
        """
        if not isinstance(name, str) or not name:
            raise PathError(f"path {name!r} must be a non-empty string")
        if "\x00" in name or len(name) > MAX_PATH_CHARS:
            raise PathError(f"path {name[:80]!r}... is not a valid path (NUL byte or over "
                            f"{MAX_PATH_CHARS} characters)")
        long = next((p for p in Path(name).parts if len(os.fsencode(p)) > MAX_NAME_BYTES), None)
        if long is not None:
            raise PathError(f"path {name[:80]!r}: the name {long[:40]!r}... is over {MAX_NAME_BYTES} bytes, "
                            "longer than a file system allows")
        try:
            return self._resolve(name, must_exist, kind)
        except OSError as exc:   # e.g. a component that is not a folder, or no permission to look
            raise PathError(f"path {name[:80]!r} cannot be used: {exc.strerror}") from None

    def _resolve(self, name: str, must_exist: bool, kind: str | None) -> Path:
        if not self.roots:
            raise PathError(f"path {name!r} refused: this server was started without --root, so it "
                            "accepts no paths (send the data as arrays, or restart it with --root DIR)")
        parts = Path(name).parts
        if ".." in parts:
            raise PathError(f"path {name!r} refused: '..' components are not allowed (paths must stay "
                            f"under the server's roots: {self._roots_text()})")
        candidates = [Path(name)] if os.path.isabs(name) else [root / name for root in self.roots]
        real = None
        for candidate in candidates:
            resolved = Path(os.path.realpath(candidate))
            if not self._inside(resolved):
                if not self._inside(Path(os.path.abspath(candidate))):
                    raise PathError(f"path {name!r} refused: it is outside the server's roots "
                                    f"({self._roots_text()})")
                raise PathError(f"path {name!r} refused: it resolves to {str(resolved)!r} through a "
                                f"symlink, outside the server's roots ({self._roots_text()})")
            if resolved.exists():
                real = resolved
                break
            real = real or resolved
        assert real is not None
        if must_exist and not real.exists():
            raise PathError(f"path {name!r} does not exist under the server's roots "
                            f"({self._roots_text()})")
        if must_exist and kind == "file" and not real.is_file():
            raise PathError(f"path {name!r} is not a file")
        if must_exist and kind == "dir" and not real.is_dir():
            raise PathError(f"path {name!r} is not a directory")
        return real

    def relative(self, path: Path) -> str:
        """``path`` relative to the first root holding it (how it is shown to clients)."""
        for root in self.roots:
            if path == root or root in path.parents:
                return path.relative_to(root).as_posix()
        return str(path)

    def _inside(self, path: Path) -> bool:
        return any(path == root or root in path.parents for root in self.roots)

    def _roots_text(self) -> str:
        return ", ".join(str(r) for r in self.roots)


def check_output(path: Path, overwrite: bool, what: str = "out") -> None:
    """Refuse to write ``path`` before any work starts: an existing file (unless ``overwrite``), a
    folder or other non-file in its place, or a parent that cannot become a folder we may write."""
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise PathError(f"{what} {str(path)!r} exists and is not a regular file")
    if path.exists() and not overwrite:
        raise PathError(f"{what} {str(path)!r} already exists; choose another name or ask to overwrite it "
                        "(overwrite: true, or --overwrite)")
    folder = path.parent   # missing folders are made by the write; the nearest existing one decides
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise PathError(f"{what} {str(path)!r}: {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK):
        raise PathError(f"{what} {str(path)!r}: the folder {str(folder)!r} is not writable")


def write_output(path: Path, write: Callable[[Path], None], overwrite: bool, what: str = "out") -> None:
    """``write(p)`` a complete file, then put it at ``path`` atomically. Without ``overwrite`` the final
    step is a hard link, which fails rather than replace a file that appeared meanwhile."""
    check_output(path, overwrite, what)
    if overwrite:
        write(path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".avatex-new-") as folder:
        tmp = Path(folder) / ("new" + path.suffix)
        write(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise PathError(f"{what} {str(path)!r} appeared while it was being written; it was kept "
                            "and nothing was written") from None
        except OSError:   # a file system without hard links: a last check is the best there is
            if path.exists():
                raise PathError(f"{what} {str(path)!r} already exists") from None
            os.replace(tmp, path)
