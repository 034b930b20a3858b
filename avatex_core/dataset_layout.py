"""The dataset on disk: file names, per-view records, the manifest, resume, shards (pure Python).

Layout (documented for users in docs/dataset.md; read by ``backend.data.dataset``)::

    DATASET/
      manifest.json                    format, settings identity, views, levels, subjects + split
      subjects/<sid>/subject.json      source, normalisation, GT mesh files, counts
      subjects/<sid>/mesh.ply          GT mesh with vertex colours, or mesh.obj + mesh.mtl + textures
      subjects/<sid>/views/v000/       one folder per view
          albedo.png                   unlit colours, RGBA (alpha = mask)
          normals_front.png            optional (--normals): camera-space normals, RGB = 0.5 n + 0.5
          normals_back.png             optional: the same seen from behind (yaw + 180°), as rendered
          <level>.png                  lit render per level, RGBA (alpha = mask)
          view.json                    calib, yaw/pitch, per-image light + seed: the commit marker

Commit protocol: every file is written to a temporary name and renamed; ``view.json`` is written last,
so a view is finished exactly when its record exists and names files that exist. Work is split into
(subject, view) units; a unit belongs to exactly one shard and one worker, so two processes never write
the same file, except ``manifest.json``, which is merged under a file lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

FORMAT = "avatex-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".manifest.lock"
SUBJECTS = "subjects"
SUBJECT_JSON = "subject.json"
VIEWS = "views"
VIEW_JSON = "view.json"
ALBEDO = "albedo"
NORMALS_FRONT = "normals_front"
NORMALS_BACK = "normals_back"
SUBJECT_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".fbx", ".blend")
TMP_MARK = ".tmp-"  # avatex_core.atomic's marker for temporaries

_PNG_HEAD = b"\x89PNG\r\n\x1a\n"
_PNG_TAIL = b"IEND\xaeB`\x82"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class LayoutError(ValueError):
    """The output folder or the subject list cannot be used; the message says why."""


def image_name(level: str) -> str:
    return f"{level}.png"


def subject_dir(root: Path, sid: str) -> Path:
    return Path(root) / SUBJECTS / sid


def view_dir(root: Path, sid: str, view_name: str) -> Path:
    return subject_dir(root, sid) / VIEWS / view_name


def expand_subject_paths(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """Files stay, folders expand (recursively, sorted) to the meshes inside.

    Returns (subject files, problems); a problem is a missing path or a file of an unknown type.
    """
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in SUBJECT_SUFFIXES
                           and TMP_MARK not in q.name)
            if not found:
                problems.append(f"{p}: folder holds no mesh files ({', '.join(SUBJECT_SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in SUBJECT_SUFFIXES:
                problems.append(f"{p}: unsupported subject type {p.suffix!r} "
                                f"(use {', '.join(SUBJECT_SUFFIXES)})")
            else:
                files.append(p)
        else:
            problems.append(f"{p}: no such file or folder")
    unique: dict[Path, None] = {}
    for f in files:
        unique.setdefault(f.resolve(), None)
    return list(unique), problems


def subject_ids(files: Sequence[Path]) -> dict[str, Path]:
    """Stable, unique ids: the file stem, made longer only where stems clash.

    Clashing files get ``<stem>_<ext>`` (``a.obj`` and ``a.glb``), then ``<parent>_<stem>``
    (``x/mesh.obj`` and ``y/mesh.obj``), then ``<parent>_<stem>_<ext>``.
    """
    def clean(s: str) -> str:
        return _SAFE.sub("_", s).strip("._") or "subject"

    candidates = [[clean(f.stem), clean(f"{f.stem}_{f.suffix[1:]}"), clean(f"{f.parent.name}_{f.stem}"),
                   clean(f"{f.parent.name}_{f.stem}_{f.suffix[1:]}")] for f in files]
    level = [0] * len(files)
    while True:
        ids = [c[min(lv, 3)] for c, lv in zip(candidates, level, strict=True)]
        counts: dict[str, int] = {}
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
        clashes = [k for k, i in enumerate(ids) if counts[i] > 1]
        if not clashes:
            return dict(zip(ids, files, strict=True))
        if any(level[k] >= 3 for k in clashes):
            a, b = (files[k] for k in clashes[:2])
            raise LayoutError(f"two subjects get the id {ids[clashes[0]]!r}: {a} and {b}; rename one of them")
        for k in clashes:
            level[k] += 1


def _hash_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def split_of(sid: str, test_fraction: float, seed: int = 0) -> str:
    """'test' or 'train', from a hash of the subject id: stable when subjects are added or sharded."""
    u = _hash_int(f"split:{seed}:{sid}") / 2.0 ** 64
    return "test" if u < test_fraction else "train"


def parse_part(text: str, what: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise LayoutError(f"{what} must look like I/N with 0 <= I < N, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def owner(sid: str, position: int, parts: int) -> int:
    """Which of ``parts`` owns a subject's ``position``-th unit: round robin from a per-subject offset."""
    return (_hash_int(f"owner:{sid}") + position) % parts


def my_views(sid: str, views: Sequence[int], shard: tuple[int, int], worker: tuple[int, int]) -> list[int]:
    """The view indices of one subject that belong to (shard I/N, worker J/W): disjoint and covering."""
    in_shard = [v for pos, v in enumerate(views) if owner(sid, pos, shard[1]) == shard[0]]
    return [v for pos, v in enumerate(in_shard) if owner(sid + "#w", pos, worker[1]) == worker[0]]


def owns_subject_files(sid: str, views: Sequence[int], shard: tuple[int, int],
                       worker: tuple[int, int]) -> bool:
    """The owner of a subject's first view also writes its GT mesh and ``subject.json`` (one writer)."""
    return bool(views) and views[0] in my_views(sid, views, shard, worker)


def png_complete(path: Path) -> bool:
    """Cheap integrity check: PNG signature at the start and the IEND chunk at the end."""
    try:
        size = path.stat().st_size
        if size < len(_PNG_HEAD) + len(_PNG_TAIL):
            return False
        with open(path, "rb") as fh:
            head = fh.read(8)
            fh.seek(size - 8)
            tail = fh.read(8)
        return head == _PNG_HEAD and tail == _PNG_TAIL
    except OSError:
        return False


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def view_finished(vdir: Path, levels: Sequence[str], identity_hash: str) -> bool:
    """True when the view's record exists, matches the settings and names complete images."""
    record = read_json(vdir / VIEW_JSON)
    if (record is None or record.get("format_version") != FORMAT_VERSION
            or record.get("settings_hash") != identity_hash):
        return False
    images = record.get("images") or {}
    if set(images) != set(levels):
        return False
    files = [vdir / str(images[lv].get("file", "")) for lv in levels]
    files.append(vdir / str((record.get("albedo") or {}).get("file", "")))
    return all(png_complete(f) for f in files)


def remove_temporaries(folder: Path) -> int:
    """Delete leftovers of killed writers directly inside ``folder`` (not recursive)."""
    count = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_file() and TMP_MARK in p.name:
                p.unlink(missing_ok=True)
                count += 1
    return count


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 120.0) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` across processes (fcntl on POSIX, msvcrt on Windows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if os.name == "nt":  # pragma: no cover - exercised on Windows only
        import msvcrt

        def lock() -> None:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

        def unlock() -> None:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

        busy: type[OSError] = OSError  # msvcrt reports a held lock as a plain OSError
    else:
        import fcntl

        def lock() -> None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

        def unlock() -> None:
            fcntl.flock(fd, fcntl.LOCK_UN)

        busy = BlockingIOError
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                lock()
                break
            except busy:
                if time.monotonic() > deadline:
                    raise LayoutError(f"timed out waiting for the lock {path}") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            unlock()
    finally:
        os.close(fd)


def _diff(old: Any, new: Any, prefix: str = "") -> str | None:
    """The first differing key path between two JSON values, as text, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            d = _diff(old.get(key), new.get(key), f"{prefix}{key}.")
            if d:
                return d
        return None
    return None if old == new else f"{prefix.rstrip('.')}: {old!r} in the dataset, {new!r} now"


def merge_manifest(root: Path, identity: dict[str, Any], views: list[dict[str, Any]],
                   subjects: dict[str, dict[str, Any]], failed: dict[str, str] | None = None,
                   succeeded: Iterable[str] = (), write_json=None, created_by: str = "") -> dict[str, Any]:
    """Create or update ``manifest.json`` under the lock; refuse a dataset rendered with other settings.

    ``subjects`` maps ids to their entries (split, dir, source); ``failed`` adds failures, and ids in
    ``succeeded`` drop earlier failures. ``write_json`` is ``avatex_core.atomic.write_json`` (injected so this
    module stays importable on its own).
    """
    root = Path(root)
    with file_lock(root / LOCK):
        path = root / MANIFEST
        manifest = read_json(path) if path.exists() else None
        if path.exists() and manifest is None:
            raise LayoutError(f"{path} is not valid JSON; move it away or choose another --out folder")
        if manifest is None:
            manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "created_by": created_by,
                        "settings": identity, "settings_hash": identity_hash(identity), "views": views,
                        "levels": identity["levels"], "subjects": {}, "failed": {}}
        else:
            if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
                raise LayoutError(f"{root} holds a dataset of format {manifest.get('format')!r} version "
                                  f"{manifest.get('format_version')!r}; this renderer writes {FORMAT!r} "
                                  f"version {FORMAT_VERSION}. Use another --out folder.")
            diff = _diff(manifest.get("settings"), identity)
            if diff:
                raise LayoutError(f"{root} was rendered with other settings ({diff}); render into another "
                                  "--out folder or use the dataset's settings")
        manifest.setdefault("subjects", {}).update(subjects)
        manifest.setdefault("failed", {})
        for sid in succeeded:
            manifest["failed"].pop(sid, None)
        manifest["failed"].update(failed or {})
        manifest["subjects"] = dict(sorted(manifest["subjects"].items()))
        if write_json is None:
            from . import atomic

            write_json = atomic.write_json
        write_json(path, manifest)
        return manifest
