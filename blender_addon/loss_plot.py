"""A loss curve drawn in numpy, for the Train panel's image (Blender has no matplotlib).

:func:`render_curve` returns an RGBA float32 image in Blender's pixel order (rows bottom-up), ready for
``image.pixels.foreach_set``. It draws a light grid, the raw losses in a faint colour and an
exponential moving average on top, scaled to the data's own range; the panel prints the numbers
(the axes carry no text: there is no font rasteriser here).
"""

from __future__ import annotations

import numpy as np

BACKGROUND = (0.10, 0.10, 0.10, 1.0)
GRID = (0.22, 0.22, 0.22, 1.0)
RAW = (0.35, 0.45, 0.60, 1.0)
SMOOTH = (1.00, 0.62, 0.20, 1.0)
MARGIN = 6


def ema(values: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """Exponential moving average, bias-corrected so the first points are not pulled toward 0."""
    v = np.asarray(values, dtype=np.float64)
    out = np.empty_like(v)
    acc, weight = 0.0, 0.0
    for i, x in enumerate(v):
        acc = (1 - alpha) * acc + alpha * x
        weight = (1 - alpha) * weight + alpha
        out[i] = acc / weight
    return out


def _draw_polyline(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, color: tuple, width: int) -> None:
    """Draw connected segments by dense sampling (rows are y from the top here)."""
    h, w = img.shape[:2]
    if len(xs) == 1:
        xs, ys = np.repeat(xs, 2), np.repeat(ys, 2)
    for x0, y0, x1, y1 in zip(xs[:-1], ys[:-1], xs[1:], ys[1:], strict=True):
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 2
        t = np.linspace(0.0, 1.0, n)
        px = np.rint(x0 + (x1 - x0) * t).astype(np.int64)
        py = np.rint(y0 + (y1 - y0) * t).astype(np.int64)
        for dx in range(-(width // 2), width - width // 2):
            for dy in range(-(width // 2), width - width // 2):
                cx, cy = np.clip(px + dx, 0, w - 1), np.clip(py + dy, 0, h - 1)
                img[cy, cx] = color


def _per_column(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One point per pixel column (the mean height there), so long runs draw in constant time."""
    if len(px) <= 2:
        return px, py
    cols = np.rint(px).astype(np.int64)
    uniq, inverse = np.unique(cols, return_inverse=True)
    if len(uniq) == len(px):
        return px, py
    sums = np.bincount(inverse, weights=py)
    counts = np.bincount(inverse)
    return uniq.astype(np.float64), sums / counts


def render_curve(steps: np.ndarray, losses: np.ndarray, width: int = 320, height: int = 160) -> np.ndarray:
    """(height, width, 4) float32 RGBA, rows bottom-up (Blender's order), of loss against step."""
    img = np.empty((height, width, 4), dtype=np.float32)
    img[:] = BACKGROUND
    x0, x1, y0, y1 = MARGIN, width - 1 - MARGIN, MARGIN, height - 1 - MARGIN
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        img[int(round(y0 + frac * (y1 - y0))), x0:x1 + 1] = GRID
        img[y0:y1 + 1, int(round(x0 + frac * (x1 - x0)))] = GRID
    steps = np.asarray(steps, dtype=np.float64).reshape(-1)
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    keep = np.isfinite(steps) & np.isfinite(losses)
    steps, losses = steps[keep], losses[keep]
    if len(steps):
        s_lo, s_hi = steps.min(), steps.max()
        l_lo, l_hi = losses.min(), losses.max()
        s_span = s_hi - s_lo or 1.0
        l_pad = 0.05 * (l_hi - l_lo) or max(abs(l_hi), 1.0) * 0.05
        l_lo, l_hi = l_lo - l_pad, l_hi + l_pad

        def to_px(s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            px = x0 + (s - s_lo) / s_span * (x1 - x0)
            py = y0 + (l_hi - v) / (l_hi - l_lo) * (y1 - y0)  # top row = highest loss
            return px, py

        if len(steps) > 1:
            _draw_polyline(img, *_per_column(*to_px(steps, losses)), RAW, 1)
        _draw_polyline(img, *_per_column(*to_px(steps, ema(losses))), SMOOTH, 2)
    return np.ascontiguousarray(img[::-1])


def update_image(name: str, steps: np.ndarray, losses: np.ndarray, width: int = 320, height: int = 160):
    """Create or refresh the Blender image ``name`` with the curve; returns the image datablock."""
    import bpy

    img = bpy.data.images.get(name)
    if img is None or tuple(img.size) != (width, height):
        if img is not None:
            bpy.data.images.remove(img)
        img = bpy.data.images.new(name, width, height, alpha=True)
    img.pixels.foreach_set(render_curve(steps, losses, width, height).ravel())
    img.update()
    preview = img.preview  # None until something asked for a preview; then refresh it
    if preview is not None:
        preview.reload()
    return img
