"""Read a relit dataset rendered by ``avatex render`` (format: docs/dataset.md).

    ds = Dataset("data/relit")
    for sid in ds.split("train"):
        mesh = ds.gt_mesh(sid)                      # normalised GT ColoredMesh (canonical space)
        for view in ds.views_of(sid):               # finished views only
            rgba = ds.image(sid, view, "wild")      # (H, W, 4) uint8, alpha = mask
            calib = ds.calib(sid, view)             # (4, 4) float32, canonical -> image
            albedo = ds.albedo(sid, view)           # (H, W, 4) uint8, unlit colours

or item by item: ``len(ds)``, ``ds[i]`` -> dict (subject, view, level, image, mask, calib, light, seed,
albedo). Only complete views are visible: a view exists once its record (``view.json``) does, and the
renderer writes that last. numpy + PIL + json only (no bpy, no torch).

Every path read because a file names it (a subject's ``dir`` in the manifest, the GT mesh file in
``subject.json``, image files in ``view.json``) is confined to the dataset folder, like a path a
client names to the server: it must be relative, without ``..``, and resolve (symlinks followed)
inside the folder. A file that breaks this is refused with a message naming the field, before
anything outside is looked at, so the error reveals nothing about files outside.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from avatex_core.canonical import Normalization
from avatex_core.color import srgb_to_linear
from avatex_core.dataset_layout import FORMAT, FORMAT_VERSION, MANIFEST, SUBJECT_JSON, VIEW_JSON, VIEWS
from backend.errors import InputError


class DatasetError(InputError):
    """The folder is not a readable avatex dataset, or an item asked for is not in it."""


@dataclass(frozen=True)
class Item:
    """One training example: a (subject, view, level) whose images and record exist."""

    subject: str
    view: int
    level: str


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise DatasetError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{what} is unreadable: {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{what} is not a JSON object: {path}")
    return data


def _read_png(path: Path) -> np.ndarray:
    from backend.images import read_image

    if not path.is_file():
        raise DatasetError(f"image missing: {path}")
    try:
        return read_image(path, "RGBA")
    except InputError as exc:
        raise DatasetError(f"image unreadable: {path}: {exc}") from None


def confined(base: Path, name: Any, field: str) -> Path:
    """``base / name`` if ``name`` (read from a file) is a relative path that stays inside ``base``;
    :class:`DatasetError` naming ``field`` otherwise. Decided before anything outside is touched."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise DatasetError(f"{field} must be a non-empty relative path, got {name!r:.80}")
    parts = Path(name).parts
    if os.path.isabs(name) or Path(name).anchor or ".." in parts:
        raise DatasetError(f"{field} {name!r:.80} must be a relative path inside the dataset folder "
                           "(no absolute path, no '..')")
    real_base = os.path.realpath(base)
    real = os.path.realpath(base / name)
    if os.path.commonpath([real_base, real]) != real_base:
        raise DatasetError(f"{field} {name!r:.80} leads out of the dataset folder through a symlink")
    return base / name


class Dataset:
    """A rendered dataset folder: manifest, subjects, split, views, levels and per-item data."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise DatasetError(f"{self.root} is not an avatex dataset (no {MANIFEST}); "
                               "render one with `avatex render --meshes ... --out DIR`")
        manifest = _read_json(path, "dataset manifest")
        if manifest.get("format") != FORMAT:
            raise DatasetError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            newer = isinstance(version, int) and version > FORMAT_VERSION
            raise DatasetError(f"{path}: dataset format version {version!r} "
                               f"{'is newer than' if newer else 'differs from'} this reader's "
                               f"{FORMAT_VERSION}; {'update avatex' if newer else 're-render the dataset'}")
        self.manifest = manifest
        self.settings: dict[str, Any] = manifest["settings"]
        self.levels: list[str] = list(manifest["levels"])
        self.resolution: int = int(self.settings["resolution"])
        self._views = {int(v["index"]): v for v in manifest["views"]}
        self._records: dict[tuple[str, int], dict] = {}

    def __repr__(self) -> str:
        return (f"Dataset({str(self.root)!r}: {len(self.subjects())} subjects, {len(self._views)} views, "
                f"levels {self.levels})")

    # -- subjects and split ----------------------------------------------------------------------

    @cached_property
    def _subjects(self) -> dict[str, dict[str, Any]]:
        failed = self.manifest.get("failed") or {}
        subjects = self.manifest.get("subjects", {})
        if not isinstance(subjects, dict) or not isinstance(failed, dict):
            raise DatasetError(f"{self.root / MANIFEST}: 'subjects' and 'failed' must be objects")
        out = {}
        for sid, entry in sorted(subjects.items()):
            field = f"{MANIFEST}: subjects[{sid!r}].dir"
            if not isinstance(entry, dict):
                raise DatasetError(f"{MANIFEST}: subjects[{sid!r}] must be an object")
            folder = confined(self.root, entry.get("dir"), field)
            if sid not in failed and (folder / SUBJECT_JSON).is_file():
                out[sid] = entry
        return out

    def subjects(self, split: str | None = None) -> list[str]:
        """Subjects with a GT mesh on disk (failed ones excluded), optionally of one split."""
        return [sid for sid, e in self._subjects.items() if split is None or e["split"] == split]

    def split(self, name: str) -> list[str]:
        if name not in ("train", "test"):
            raise DatasetError(f"split must be 'train' or 'test', got {name!r}")
        return self.subjects(name)

    def split_of(self, sid: str) -> str:
        return self._entry(sid)["split"]

    @property
    def failed(self) -> dict[str, str]:
        """Subjects the renderer could not render, with its message."""
        return dict(self.manifest.get("failed") or {})

    def _entry(self, sid: str) -> dict[str, Any]:
        entry = self._subjects.get(sid)
        if entry is None:
            raise DatasetError(f"subject {sid!r} is not in the dataset {self.root}")
        return entry

    def subject_dir(self, sid: str) -> Path:
        return confined(self.root, self._entry(sid)["dir"], f"{MANIFEST}: subjects[{sid!r}].dir")

    def subject_info(self, sid: str) -> dict[str, Any]:
        """``subject.json``: source file, normalisation, GT mesh files and counts."""
        return _read_json(self.subject_dir(sid) / SUBJECT_JSON, "subject record")

    def normalization(self, sid: str) -> Normalization:
        """Source-file coordinates -> canonical space, as the renderer applied it."""
        return Normalization.from_dict(self.subject_info(sid)["normalization"])

    def gt_mesh_path(self, sid: str) -> Path:
        mesh = self.subject_info(sid).get("mesh")
        name = mesh.get("file") if isinstance(mesh, dict) else None
        return confined(self.subject_dir(sid), name, f"{sid}/subject.json: mesh.file")

    def gt_mesh(self, sid: str):
        """The subject's normalised GT mesh with its colours (``backend.meshio.ColoredMesh``)."""
        from backend.meshio import load_mesh

        return load_mesh(self.gt_mesh_path(sid))

    # -- views and items -------------------------------------------------------------------------

    @property
    def views(self) -> list[dict[str, Any]]:
        """Every view of the settings: ``{"index", "name", "yaw", "pitch"}``."""
        return [self._views[k] for k in sorted(self._views)]

    def _view_index(self, view: int | str) -> int:
        if isinstance(view, str):
            for k, v in self._views.items():
                if v["name"] == view:
                    return k
            raise DatasetError(f"no view named {view!r} (names look like v000)")
        if int(view) not in self._views:
            raise DatasetError(f"view {view} is not in 0..{len(self._views) - 1}")
        return int(view)

    def view_dir(self, sid: str, view: int | str) -> Path:
        return self.subject_dir(sid) / VIEWS / self._views[self._view_index(view)]["name"]

    def _record_ok(self, sid: str, k: int) -> bool:
        path = self.view_dir(sid, k) / VIEW_JSON
        if not path.is_file():
            return False
        try:
            record = self.record(sid, k)
        except DatasetError:
            return False
        return record.get("settings_hash") == self.manifest.get("settings_hash") and \
            set(record.get("images", {})) == set(self.levels)

    def views_of(self, sid: str) -> list[int]:
        """Indices of the finished views of a subject."""
        return [k for k in sorted(self._views) if self._record_ok(sid, k)]

    def record(self, sid: str, view: int | str) -> dict[str, Any]:
        """A view's ``view.json``: calib, yaw/pitch, and per level the file, seed and light."""
        k = self._view_index(view)
        key = (sid, k)
        if key not in self._records:
            self._records[key] = _read_json(self.view_dir(sid, k) / VIEW_JSON, "view record")
        return self._records[key]

    def items(self, split: str | None = None, levels: list[str] | None = None) -> list[Item]:
        """Every finished (subject, view, level), in a stable order."""
        levels = list(levels) if levels is not None else self.levels
        unknown = set(levels) - set(self.levels)
        if unknown:
            raise DatasetError(f"levels {sorted(unknown)} are not in this dataset ({self.levels})")
        return [Item(sid, k, lv) for sid in self.subjects(split) for k in self.views_of(sid) for lv in levels]

    @cached_property
    def _all_items(self) -> list[Item]:
        return self.items()

    def __len__(self) -> int:
        return len(self._all_items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.sample(self._all_items[i])

    # -- per-item data ---------------------------------------------------------------------------

    def _level_entry(self, sid: str, view: int | str, level: str) -> dict[str, Any]:
        images = self.record(sid, view).get("images")
        if not isinstance(images, dict) or not isinstance(images.get(level, {}), dict):
            raise DatasetError(f"{sid} view {view}: view.json 'images' must map levels to objects")
        if level not in images:
            raise DatasetError(f"level {level!r} is not in this dataset ({self.levels})")
        return images[level]

    def image(self, sid: str, view: int | str, level: str) -> np.ndarray:
        """The lit render, (H, W, 4) uint8 RGBA; alpha is the subject's mask."""
        return self._view_file(sid, view, self._level_entry(sid, view, level).get("file"),
                               f"images[{level!r}].file")

    def albedo(self, sid: str, view: int | str) -> np.ndarray:
        """The unlit colours, (H, W, 4) uint8 RGBA."""
        albedo = self.record(sid, view).get("albedo")
        return self._view_file(sid, view, albedo.get("file") if isinstance(albedo, dict) else None,
                               "albedo.file")

    def normal_maps(self, sid: str, view: int | str) -> tuple[np.ndarray, np.ndarray] | None:
        """The optional front/back normal maps of a view, (H, W, 3) float32 unit vectors in the view's
        camera frame (x right, y up, z toward the camera), 0 off the subject; None when the dataset
        was rendered without ``--normals``.

        The back map is stored as rendered from behind; mirrored left-right, with x and z negated, it
        gives for each front pixel the normal of the farthest surface, what PIFuHD's back net predicts.
        """
        entry = self.record(sid, view).get("normals")
        if not isinstance(entry, dict):
            return None
        maps = []
        for side in ("front", "back"):
            rgba = self._view_file(sid, view, entry.get(side), f"normals.{side}")
            n = srgb_to_linear(rgba[..., :3].astype(np.float32) / 255.0) * 2.0 - 1.0
            if side == "back":
                n = n[:, ::-1] * np.array([-1.0, 1.0, -1.0], np.float32)
                alpha = rgba[:, ::-1, 3:4]
            else:
                alpha = rgba[..., 3:4]
            norm = np.linalg.norm(n, axis=2, keepdims=True)
            n = np.where((alpha > 127) & (norm > 1e-3), n / np.maximum(norm, 1e-6), 0.0)
            maps.append(np.ascontiguousarray(n, dtype=np.float32))
        return maps[0], maps[1]

    def _view_file(self, sid: str, view: int | str, name: Any, field: str) -> np.ndarray:
        folder = self.view_dir(sid, view)
        return _read_png(confined(folder, name, f"{sid}/views/{folder.name}/view.json: {field}"))

    def mask(self, sid: str, view: int | str) -> np.ndarray:
        """(H, W) float32 in [0, 1]: the render's alpha (antialiased coverage)."""
        return self.albedo(sid, view)[..., 3].astype(np.float32) / 255.0

    def calib(self, sid: str, view: int | str) -> np.ndarray:
        """(4, 4) float32 calib of the view (canonical -> normalised image coordinates, y down)."""
        return np.asarray(self.record(sid, view)["calib"], dtype=np.float32)

    def light(self, sid: str, view: int | str, level: str) -> dict[str, Any]:
        """The light actually used for that image (what re-renders it), see docs/dataset.md."""
        return dict(self._level_entry(sid, view, level)["light"])

    def seed(self, sid: str, view: int | str, level: str) -> int:
        return int(self._level_entry(sid, view, level)["seed"])

    def sample(self, item: Item) -> dict[str, Any]:
        """Everything about one item: images as uint8 arrays, calib, light, seed."""
        image = self.image(item.subject, item.view, item.level)
        return {"subject": item.subject, "view": item.view, "level": item.level, "image": image,
                "mask": image[..., 3].astype(np.float32) / 255.0,
                "calib": self.calib(item.subject, item.view),
                "light": self.light(item.subject, item.view, item.level),
                "seed": self.seed(item.subject, item.view, item.level),
                "albedo": self.albedo(item.subject, item.view)}
