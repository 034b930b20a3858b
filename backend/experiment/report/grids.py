"""Image grids: per held-out subject, input | GT | reconstructions | heatmaps, composed with Pillow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from backend.errors import InputError
from backend.experiment.report.blender import audit_images
from backend.experiment.report.prose import LABELS, MODELS, format_value


def _on_white(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3].astype(np.float32) * a + 255.0 * (1.0 - a)).round().astype(np.uint8)


def _tile(image: np.ndarray, height: int) -> np.ndarray:
    """RGBA composited on white, cropped to the subject (+ a margin), scaled to ``height`` pixels."""
    from PIL import Image

    rgba = image if image.shape[2] == 4 else np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    cols = np.flatnonzero(rgba[..., 3].max(axis=0) > 8)
    rows = np.flatnonzero(rgba[..., 3].max(axis=1) > 8)
    if len(cols) and len(rows):
        m = max(2, int(0.04 * rgba.shape[0]))
        rgba = rgba[max(0, rows[0] - m):rows[-1] + 1 + m, max(0, cols[0] - m):cols[-1] + 1 + m]
    rgb = Image.fromarray(_on_white(rgba))
    w = max(1, round(rgb.width * height / rgb.height))
    return np.asarray(rgb.resize((w, height), Image.LANCZOS))


def _load_rgba(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


def compose_grid(rows: list[tuple[str, list[tuple[str, np.ndarray]]]], height: int, out: Path,
                 legend: bool = True) -> Path:
    """A labelled grid PNG: one row per (label, [(column title, RGBA image)]), tiles of equal height."""
    from PIL import Image, ImageDraw

    from avatex_core.atomic import write_bytes

    tiles = [[_tile(img, height) for _, img in cols] for _, cols in rows]
    ncol = max(len(r) for r in tiles)
    widths = [max((r[c].shape[1] for r in tiles if c < len(r)), default=height) for c in range(ncol)]
    left, top, pad = 110, 22, 6
    bar_h = 34 if legend else 0
    width = left + sum(widths) + pad * ncol
    canvas = Image.new("RGB", (width, top + len(rows) * (height + pad) + bar_h), "white")
    draw = ImageDraw.Draw(canvas)
    titles = [t for t, _ in rows[0][1]]
    x = left
    for c, w in enumerate(widths):
        if c < len(titles):
            draw.text((x + 2, 4), titles[c], fill="black")
        x += w + pad
    for r, (label, _) in enumerate(rows):
        y = top + r * (height + pad)
        draw.text((6, y + height // 2 - 6), label, fill="black")
        x = left
        for c, tile in enumerate(tiles[r]):
            canvas.paste(Image.fromarray(tile), (x + (widths[c] - tile.shape[1]) // 2, y))
            x += widths[c] + pad
    if legend:
        _legend(draw, left, top + len(rows) * (height + pad) + 4, min(360, width - left - 10))
    import io

    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out, buf.getvalue())
    return out


def _legend(draw, x: int, y: int, width: int) -> None:
    from avatex_core.heatmap import SCALE_MAX, heatmap_srgb

    values = np.linspace(0.0, SCALE_MAX, width, dtype=np.float32)
    colors = (heatmap_srgb(values) * 255).round().astype(int)
    for i, c in enumerate(colors):
        draw.line([(x + i, y), (x + i, y + 10)], fill=tuple(int(v) for v in c))
    for tick in (0, 5, 10, 15, 20):
        tx = x + int(tick / SCALE_MAX * (width - 1))
        draw.text((tx - 4, y + 12), f"{tick}{'+' if tick == SCALE_MAX else ''}", fill="black")
    draw.text((x + width + 8, y), "heatmap: PATD per vertex (CIEDE2000)", fill="black")


def subject_grid(evaluation, ds, sid: str, view: int, levels: list[str], work: Path, out: Path, size: int,
                 eval_dir: Path, models: Sequence[str] = MODELS,
                 labels: Mapping[str, str] = LABELS) -> Path:
    """Rows = lighting levels; columns = input, GT albedo, the reconstructions of ``models`` (kept by
    the evaluation in ``eval_dir``), then their heatmaps."""
    folders = {name: info.get("folder", name) for name, info in evaluation.models.items()}
    jobs, keys = [], []
    for level in levels:
        for m in models:
            stem = f"v{int(view):03d}_{level}"
            mesh = eval_dir / folders[m] / sid / f"{stem}.ply"
            errors = eval_dir / folders[m] / sid / f"{stem}.npz"
            if not mesh.is_file() or not errors.is_file():
                raise InputError(f"the evaluation kept no mesh for {m} / {sid} / {stem} (expected {mesh})")
            jobs.append({"mesh": mesh, "errors": errors, "out": work, "name": f"{m}_{sid}_{stem}",
                         "size": size})
            keys.append((level, m))
    renders = dict(zip(keys, audit_images(jobs, work), strict=True))
    rows = []
    for level in levels:
        cols = [("input (relit render)", ds.image(sid, view, level)),
                ("GT (albedo render)", ds.albedo(sid, view))]
        patd = {m: _item_value(evaluation, m, sid, view, level, "patd") for m in models}
        cols += [(labels[m], _load_rgba(renders[level, m]["colors"])) for m in models]
        cols += [(f"{labels[m]}: {format_value(patd[m])}", _load_rgba(renders[level, m]["heatmap"]))
                 for m in models]
        rows.append((level, cols))
    return compose_grid(rows, height=size, out=out)


def _item_value(evaluation, model: str, sid: str, view: int, level: str, key: str) -> float | None:
    for r in evaluation.per_item:
        if (r["model"], r["subject"], int(r["view"]), r["level"]) == (model, sid, int(view), level):
            v = r.get(key)
            return None if v is None else float(v)
    return None
