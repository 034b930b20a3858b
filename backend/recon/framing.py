"""Frame a photo or render the way PIFu expects: subject centred, 450 of 512 px tall, masked.

PIFu was trained on subjects normalised to span ``canonical.SUBJECT_PIXELS`` (450) of
``canonical.IMAGE_SIZE`` (512) pixels, vertically centred, and its ``apps/crop_img.py`` frames real
photos the same way. Here: take the mask's bounding box, cut a square of side
``IMAGE_SIZE / SUBJECT_PIXELS`` x the box height centred on the box (enlarged to the box width if the
subject is wider than that, so nothing is cut off), pad with zeros where it leaves the image, resize to
the network's input size (bilinear, antialiased when shrinking, mask not binarised, as PIL/torchvision
resize it in the official eval), and form the network input with :func:`network_image`, the one
definition training (``backend.train.data.image_tensors``) shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from avatex_core import canonical
from backend.errors import InputError


def network_image(rgb, mask):
    """PIFu's image input: sRGB in [0, 1] mapped to [-1, 1], times the subject mask (background 0).

    Training, reconstruction and evaluation all form the input here, and the mask is applied here only:
    a second multiplication would give soft silhouette pixels ``(2 * rgb - 1) * mask**2``, an input the
    nets never saw in training. Works on numpy arrays and torch tensors alike (``rgb`` channels-first,
    ``mask`` broadcasting over the channels).
    """
    return (rgb * 2.0 - 1.0) * mask


@dataclass
class FramedImage:
    """The network's view of the subject.

    ``rgb`` (S, S, 3) float32 in [0, 1] and ``mask`` (S, S) float32 in [0, 1] at the model's input size;
    ``crop`` is the square cut from the source image: ``(top, left, side)`` in source pixels (may extend
    past the image borders, which were zero-padded).
    """

    rgb: np.ndarray
    mask: np.ndarray
    crop: tuple[int, int, int]

    def network_input(self) -> np.ndarray:
        """The float32 image [1, 3, S, S] that ``PIFu.encode`` takes: :func:`network_image`, masked once."""
        img = network_image(self.rgb.transpose(2, 0, 1)[None], self.mask[None, None])
        return img.astype(np.float32)


def _as_float_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None].repeat(3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InputError(f"image must be (H, W, 3) RGB or (H, W, 4) RGBA, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(image.astype(np.float32), 0.0, 1.0)
    raise InputError(f"image must be uint8 or float in [0, 1], got {image.dtype}")


def _as_float_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise InputError(f"mask must be a single-channel (H, W) image, got shape {mask.shape}")
    if mask.dtype == bool:
        return mask.astype(np.float32)
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) / 255.0
    if np.issubdtype(mask.dtype, np.floating):
        return np.clip(mask.astype(np.float32), 0.0, 1.0)
    raise InputError(f"mask must be bool, uint8 or float in [0, 1], got {mask.dtype}")


def subject_mask(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The [0, 1] subject mask: ``mask`` if given, else the image's alpha channel; else an error."""
    img = np.asarray(image)
    if mask is not None:
        m = _as_float_mask(mask)
        if m.shape != img.shape[:2]:
            raise InputError(f"mask is {m.shape[1]}x{m.shape[0]} pixels but the image is "
                             f"{img.shape[1]}x{img.shape[0]}")
        return m
    if img.ndim == 3 and img.shape[2] == 4:
        m = _as_float_mask(img[:, :, 3])
        if m.min() >= 0.5:
            raise InputError("a mask is needed: the image's alpha channel is fully opaque, so it does not "
                             "mark the subject; pass a mask (--mask MASK) or an RGBA image with a cut-out")
        return m
    raise InputError("a mask is needed: the image has no alpha channel and no mask was given; pass a mask "
                     "(--mask MASK) or an RGBA image whose alpha marks the subject")


def frame_subject(image: np.ndarray, mask: np.ndarray | None = None, size: int = canonical.IMAGE_SIZE
                  ) -> FramedImage:
    """Crop, pad and resize ``image`` around the subject (module docstring)."""
    m = subject_mask(image, mask)
    rgb = _as_float_image(image)[:, :, :3]
    rows = np.flatnonzero((m > 0.5).any(axis=1))
    cols = np.flatnonzero((m > 0.5).any(axis=0))
    if len(rows) == 0:
        raise InputError("the mask is empty: no pixel is marked as subject (values > 0.5)")
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    ratio = canonical.IMAGE_SIZE / canonical.SUBJECT_PIXELS
    side = max(int(round((bottom - top) * ratio)), int(right - left), 1)
    cy, cx = 0.5 * (top + bottom), 0.5 * (left + right)
    y0 = int(round(cy - side / 2))
    x0 = int(round(cx - side / 2))
    h, w = m.shape
    crop_rgb = np.zeros((side, side, 3), np.float32)
    crop_mask = np.zeros((side, side), np.float32)
    sy0, sy1 = max(0, y0), min(h, y0 + side)
    sx0, sx1 = max(0, x0), min(w, x0 + side)
    crop_rgb[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    crop_mask[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = m[sy0:sy1, sx0:sx1]
    if side != size:
        crop_rgb = np.stack([_resize(crop_rgb[:, :, c], size) for c in range(3)], axis=2)
        crop_mask = _resize(crop_mask, size)
    return FramedImage(np.clip(crop_rgb, 0.0, 1.0), np.clip(crop_mask, 0.0, 1.0), (y0, x0, side))


def calibrated_view(image: np.ndarray, mask: np.ndarray | None, size: int, what: str = "image"
                    ) -> FramedImage:
    """A calibrated view as the network sees it: the whole image resized to ``size`` x ``size``, masked,
    never re-framed, because its calib already maps canonical points into this image (normalised
    coordinates do not depend on the pixel count or the aspect). ``crop`` is the whole image."""
    try:
        m = subject_mask(image, mask)
        rgb = _as_float_image(image)[:, :, :3]
    except InputError as exc:
        raise InputError(f"{what}: {exc}") from None
    if not (m > 0.5).any():
        raise InputError(f"{what}: the mask is empty: no pixel is marked as subject (values > 0.5)")
    h, w = m.shape
    if (h, w) != (size, size):
        rgb = np.stack([_resize(rgb[:, :, c], size) for c in range(3)], axis=2)
        m = _resize(m, size)
    return FramedImage(np.clip(rgb, 0.0, 1.0), np.clip(m, 0.0, 1.0), (0, 0, max(h, w)))


def _resize(channel: np.ndarray, size: int) -> np.ndarray:
    """One channel to ``size`` x ``size`` (PIL bilinear, as the official eval resizes)."""
    resized = Image.fromarray(np.ascontiguousarray(channel, np.float32)).resize((size, size), Image.BILINEAR)
    return np.asarray(resized, np.float32)
