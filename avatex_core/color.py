"""sRGB <-> linear transfer functions (the one definition) and colour-attribute layout (docs/architecture.md).

avatex colours are sRGB-encoded floats; Blender's FLOAT_COLOR attributes hold scene-linear values. These
are the IEC 61966-2-1 transfer functions, the same ones Blender's ``color_srgb`` accessor uses, so a
colour written here as linear reads back through ``color_srgb`` as the sRGB value it started as. The
lighting levels use the extended form (``clip=False``: the power law continues above 1, so over-bright
levels over-expose) and the colour metrics decode through it in float64 before CIELAB.
Pure numpy: no bpy, so the tests and the backend environment can import it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SRGB_ENCODE_LIMIT = 0.0031308
"""Linear values up to this encode on the straight segment (IEC 61966-2-1)."""
SRGB_DECODE_LIMIT = 1.055 * SRGB_ENCODE_LIMIT ** (1.0 / 2.4) - 0.055
"""Code values up to this decode on the straight segment. The standard prints 0.04045; this is the
encoding threshold's image under the power law (0.0404499...), as colour-science has it. The two pieces
differ by ~2e-9 (linear light) around it: only bit-wise agreement sees the choice."""


def srgb_to_linear(srgb: Any, *, clip: bool = True, dtype: Any = np.float32) -> np.ndarray:
    """sRGB-encoded values -> linear, same shape, in ``dtype``.

    ``clip``: clip to [0, 1] first (colour attributes); without it values above 1 follow the same power
    law and values below 0 the straight segment.
    """
    c = np.asarray(srgb, dtype=dtype)
    if clip:
        c = np.clip(c, 0.0, 1.0)
    curve = ((np.maximum(c, SRGB_DECODE_LIMIT) + 0.055) / 1.055) ** 2.4
    return np.where(c <= SRGB_DECODE_LIMIT, c / 12.92, curve).astype(dtype, copy=False)


def linear_to_srgb(linear: Any, *, clip: bool = True, dtype: Any = np.float32) -> np.ndarray:
    """Linear values -> sRGB-encoded, same shape, in ``dtype``; ``clip`` as in :func:`srgb_to_linear`."""
    c = np.asarray(linear, dtype=dtype)
    if clip:
        c = np.clip(c, 0.0, 1.0)
    curve = 1.055 * np.maximum(c, SRGB_ENCODE_LIMIT) ** (1.0 / 2.4) - 0.055
    return np.where(c <= SRGB_ENCODE_LIMIT, c * 12.92, curve).astype(dtype, copy=False)


def rgba(rgb: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """(N, 3) -> C-contiguous (N, 4) float32 with a constant alpha, the layout colour attributes take."""
    rgb = np.asarray(rgb, dtype=np.float32)
    out = np.empty((rgb.shape[0], 4), dtype=np.float32)
    out[:, :3] = rgb
    out[:, 3] = alpha
    return out
