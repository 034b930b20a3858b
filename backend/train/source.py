"""The few things training reads from a relit dataset, behind one small interface.

Training needs, per subject: its split, view indices, the GT mesh (normalised, with colours); per
(subject, view): the calib; per (subject, view, level): the RGBA render. :class:`DatasetSource` adapts
the dataset reader (``backend.data.dataset.Dataset``) to that, so the samplers and the loop never depend
on the on-disk layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from backend.errors import InputError
from backend.meshio import ColoredMesh


class DataSource(Protocol):
    def levels(self) -> list[str]: ...
    def subjects(self, split: str) -> list[str]: ...
    def views(self, sid: str) -> list[int]: ...
    def rgba(self, sid: str, view: int, level: str) -> np.ndarray: ...
    def calib(self, sid: str, view: int) -> np.ndarray: ...
    def mesh(self, sid: str) -> ColoredMesh: ...


def open_source(root: str | Path) -> DataSource:
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    return DatasetSource(root)


class DatasetSource:
    """:class:`DataSource` over ``backend.data.dataset.Dataset``."""

    def __init__(self, root: Path) -> None:
        from backend.data.dataset import Dataset

        self.root = Path(root)
        self.ds = Dataset(root)

    def levels(self) -> list[str]:
        return list(self.ds.levels)

    def subjects(self, split: str) -> list[str]:
        return list(self.ds.split(split))

    def views(self, sid: str) -> list[int]:
        return list(self.ds.views_of(sid))  # finished views only

    def rgba(self, sid: str, view: int, level: str) -> np.ndarray:
        return np.asarray(self.ds.image(sid, view, level))

    def calib(self, sid: str, view: int) -> np.ndarray:
        return np.asarray(self.ds.calib(sid, view), dtype=np.float64)

    def mesh(self, sid: str) -> ColoredMesh:
        return self.ds.gt_mesh(sid)

