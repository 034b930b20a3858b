"""Reading image files that may come from anyone: the CLI, the server and the dataset reader share this.

A PNG header can claim 30000 × 30000 pixels in a few kilobytes; decoding it would take gigabytes. The
size is checked from the header, before any pixel is decoded, against :data:`MAX_PIXELS`, and every way
PIL can fail (unreadable, truncated, a decompression bomb) becomes one :class:`InputError` line.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from backend.errors import InputError

MAX_PIXELS = 100_000_000   # 10k × 10k: far beyond any photo PIFu is given, far below a bomb


def read_image(path: str | Path, mode: str | None = None, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The image as a uint8 array.

    ``mode``: None keeps RGB / RGBA (other modes become RGB, or RGBA when they carry transparency);
    ``"L"`` is greyscale; ``"RGBA"`` always four channels; ``"mask"`` the alpha channel when there is
    one, else greyscale.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            # PIL warns about large images as it opens them; the size is checked right after instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return _decode(img, path, mode, max_pixels)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot read image {path.name}: {exc}") from None


def _decode(img, path: Path, mode: str | None, max_pixels: int) -> np.ndarray:
    width, height = img.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise InputError(f"image {path.name} is {width} × {height} pixels; images must have "
                         f"between 1 and {max_pixels:,} pixels")
    if mode == "mask":
        img = img.getchannel("A") if img.mode in ("RGBA", "LA") else img.convert("L")
    elif mode is not None:
        img = img.convert(mode)
    elif img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
    return np.asarray(img, dtype=np.uint8).copy()
