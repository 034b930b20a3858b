"""A minimal PNG encoder (numpy + zlib): real Blender's Python has no PIL.

Used for GT textures that have no file of their own (generated or float images, constant colours).
Rendered images are written by Blender itself.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+alpha, RGB, RGBA)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes of an (H, W) or (H, W, C) uint8 image, C in 1..4, row 0 at the top."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"encode_png needs uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    h, w, c = image.shape
    if c not in _COLOR_TYPE or h < 1 or w < 1:
        raise ValueError(f"cannot encode an image of shape {image.shape} as PNG")
    raw = np.zeros((h, 1 + w * c), dtype=np.uint8)  # filter byte 0 (None) per row
    raw[:, 1:] = image.reshape(h, w * c)
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPE[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b""))
