"""What an evaluation measured (:class:`Evaluation`): its table, its JSON file, its Markdown/CSV tables.

Separate from the planning (:mod:`.plan`) and the work (:mod:`.execute`), so that reading an
``evaluation.json`` back (:func:`load_evaluation`) needs neither models nor torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avatex_core.atomic import write_json
from backend.errors import InputError
from backend.evaluation import tables

FORMAT = "avatex-evaluation"
FORMAT_VERSION = 1

SUMMARY_KEYS = ("patd", "pipatd", "patd_dense", "pipatd_dense", "patd_color_only", "chamfer", "chamfer_cm",
                "pred_to_gt", "pred_to_gt_cm", "gt_to_pred", "gt_to_pred_cm", "normal_consistency", "psnr",
                "ssim", "psnr_input", "ssim_input", "psnr_novel", "ssim_novel", "lpips_input", "lpips_novel")
"""Per-item values averaged into :attr:`Evaluation.table`."""


@dataclass
class Evaluation:
    """What :func:`evaluate_runs` measured.

    ``per_item``: one dict per (model, subject, view, level) - see docs/metrics.md for the keys.
    ``models``: name -> checkpoint, geometry group, config. ``settings``: what was evaluated and how.
    ``stats``: work done (reconstructions, colour re-queries, renders), seconds per stage, LPIPS status.
    """

    per_item: list[dict[str, Any]]
    models: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def levels(self) -> list[str]:
        return list(self.settings.get("levels") or sorted({r["level"] for r in self.per_item}))

    @property
    def table(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """``{model: {level: {metric: mean over items}}}`` plus ``items`` (scored) and ``failed`` counts.

        Means skip items without the value (a failed reconstruction, image metrics off); a metric no
        item has is None.
        """
        out: dict[str, dict[str, dict[str, float | None]]] = {}
        for name in self.models:
            per_level: dict[str, dict[str, float | None]] = {}
            for level in self.levels:
                rows = [r for r in self.per_item if r["model"] == name and r["level"] == level]
                if not rows:
                    continue
                cell: dict[str, float | None] = {}
                for key in SUMMARY_KEYS:
                    values = [float(r[key]) for r in rows if _finite(r.get(key))]
                    cell[key] = float(np.mean(values)) if values else None
                cell["items"] = sum(1 for r in rows if r.get("error") is None)
                cell["failed"] = sum(1 for r in rows if r.get("error") is not None)
                per_level[level] = cell
            out[name] = per_level
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "settings": self.settings,
                "models": self.models, "table": self.table, "stats": self.stats, "per_item": self.per_item}

    def to_json(self, path: str | Path) -> Path:
        """Write everything (settings, models, table, stats, per-item values) atomically."""
        write_json(path, _jsonable(self.to_dict()))
        return Path(path)

    def markdown(self) -> str:
        return tables.to_markdown(self.table, self.levels, dense_samples=self.settings.get("dense_samples"))

    def write_tables(self, out_stem: str | Path) -> tuple[Path, Path]:
        """``<stem>.md`` and ``<stem>.csv``: metric x level rows, one column per model, best in bold."""
        return tables.write_tables(self.table, out_stem, self.levels,
                                   dense_samples=self.settings.get("dense_samples"))


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _jsonable(obj: Any) -> Any:
    """Plain JSON: numpy scalars to Python, non-finite floats to None (strict JSON has no inf)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_evaluation(path: str | Path) -> Evaluation:
    """Read an ``evaluation.json`` written by :meth:`Evaluation.to_json`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the evaluation {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path} is not an avatex evaluation file")
    return Evaluation(per_item=list(data.get("per_item", [])), models=dict(data.get("models", {})),
                      settings=dict(data.get("settings", {})), stats=dict(data.get("stats", {})))
