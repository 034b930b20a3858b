"""Blender images -> the uint8 arrays the backend takes (docs/architecture.md: sRGB, rows top-down).

``Image.pixels`` is float RGBA with rows bottom-up. Byte images hold their stored (sRGB-encoded)
values divided by 255; float images (EXR, HDR) hold scene-linear values, which are encoded to sRGB
here so the network sees what it was trained on.
"""

from __future__ import annotations

import os

import bpy
import numpy as np

from avatex_core.color import linear_to_srgb


class ImageError(ValueError):
    """An image cannot be used; the message says why and what to do."""


def image_rgba(img: bpy.types.Image) -> np.ndarray:
    """(H, W, 4) uint8 sRGB RGBA, top row first."""
    w, h = img.size  # reading the size loads a file-backed image's pixels
    if w == 0 or h == 0:
        raise ImageError(f"image {img.name!r} has no pixels (a Render Result or a missing file); save it "
                         "as an image file or pick another one")
    channels = img.channels
    buf = np.empty(w * h * channels, dtype=np.float32)
    img.pixels.foreach_get(buf)
    px = buf.reshape(h, w, channels)[::-1]
    if channels == 1:
        px = np.repeat(px, 3, axis=2)
    elif channels == 2:
        px = np.concatenate([np.repeat(px[..., :1], 3, axis=2), px[..., 1:]], axis=2)
    rgb = px[..., :3]
    if img.is_float:
        rgb = linear_to_srgb(rgb)
    alpha = px[..., 3] if px.shape[2] >= 4 else np.ones(px.shape[:2], np.float32)
    out = np.empty((h, w, 4), dtype=np.uint8)
    out[..., :3] = np.rint(np.clip(rgb, 0.0, 1.0) * 255.0)
    out[..., 3] = np.rint(np.clip(alpha, 0.0, 1.0) * 255.0)
    return out


def mask_from(rgba: np.ndarray) -> np.ndarray:
    """(H, W) uint8 mask from a mask image's pixels: its alpha if that varies, else its brightness
    (a black-and-white mask saved without alpha)."""
    alpha = rgba[..., 3]
    if alpha.min() < 255:
        return np.ascontiguousarray(alpha)
    return np.ascontiguousarray(rgba[..., :3].max(axis=2))


def read_file(path: str) -> tuple[np.ndarray, str]:
    """An image file's (H, W, 4) uint8 pixels and its stem, without leaving a datablock behind."""
    path = bpy.path.abspath(path)
    if not path or not os.path.isfile(path):
        raise ImageError(f"image file {path!r} does not exist")
    existing = {i.name for i in bpy.data.images}
    try:
        img = bpy.data.images.load(path, check_existing=True)
    except RuntimeError as exc:
        raise ImageError(f"Blender cannot read {path!r}: {exc}") from None
    try:
        return image_rgba(img), os.path.splitext(os.path.basename(path))[0]
    finally:
        if img.name not in existing:
            bpy.data.images.remove(img)


def stem(img: bpy.types.Image) -> str:
    """A mesh name for an image datablock: its name without a file extension."""
    base = os.path.basename(img.name)
    root, ext = os.path.splitext(base)
    known = (".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff", ".bmp", ".webp")
    return root if ext.lower() in known else base
