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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from avatex_core.canonical import Normalization
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
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGBA"), dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"image missing: {path}") from None
    except OSError as exc:
        raise DatasetError(f"image unreadable: {path}: {exc}") from None


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
        out = {}
        for sid, entry in sorted(self.manifest.get("subjects", {}).items()):
            if sid not in failed and (self.root / entry["dir"] / SUBJECT_JSON).is_file():
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
        return self.root / self._entry(sid)["dir"]

    def subject_info(self, sid: str) -> dict[str, Any]:
        """``subject.json``: source file, normalisation, GT mesh files and counts."""
        return _read_json(self.subject_dir(sid) / SUBJECT_JSON, "subject record")

    def normalization(self, sid: str) -> Normalization:
        """Source-file coordinates -> canonical space, as the renderer applied it."""
        return Normalization.from_dict(self.subject_info(sid)["normalization"])

    def gt_mesh_path(self, sid: str) -> Path:
        return self.subject_dir(sid) / self.subject_info(sid)["mesh"]["file"]

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
        images = self.record(sid, view)["images"]
        if level not in images:
            raise DatasetError(f"level {level!r} is not in this dataset ({self.levels})")
        return images[level]

    def image(self, sid: str, view: int | str, level: str) -> np.ndarray:
        """The lit render, (H, W, 4) uint8 RGBA; alpha is the subject's mask."""
        return _read_png(self.view_dir(sid, view) / self._level_entry(sid, view, level)["file"])

    def albedo(self, sid: str, view: int | str) -> np.ndarray:
        """The unlit colours, (H, W, 4) uint8 RGBA."""
        return _read_png(self.view_dir(sid, view) / self.record(sid, view)["albedo"]["file"])

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
