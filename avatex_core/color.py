"""sRGB <-> scene-linear conversions for Blender colour attributes (docs/architecture.md).

avatex colours are sRGB-encoded floats; Blender's FLOAT_COLOR attributes hold scene-linear values. These
are the IEC 61966-2-1 transfer functions, the same ones Blender's ``color_srgb`` accessor uses, so a
colour written here as linear reads back through ``color_srgb`` as the sRGB value it started as.
Pure numpy: no bpy, so the tests and the backend environment can import it.
"""

from __future__ import annotations

import numpy as np


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> scene-linear, float32, same shape (clipped to [0, 1] first)."""
    c = np.clip(np.asarray(srgb, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Scene-linear values -> sRGB-encoded, float32, clipped to [0, 1]."""
    c = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1.0 / 2.4) - 0.055).astype(np.float32)


def rgba(rgb: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """(N, 3) -> C-contiguous (N, 4) float32 with a constant alpha, the layout colour attributes take."""
    rgb = np.asarray(rgb, dtype=np.float32)
    out = np.empty((rgb.shape[0], 4), dtype=np.float32)
    out[:, :3] = rgb
    out[:, 3] = alpha
    return out
