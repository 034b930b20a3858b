"""Bring a single-image reconstruction back into the GT's canonical space.

``backend.recon.reconstruct`` re-frames its input (the subject 450 of 512 px tall, centred on its mask's
box) and returns vertices in the *framed* image's normalised space. A dataset image is already in the
canonical framing of its view, and its GT mesh is in canonical space, so two steps undo the framing:

1. framed -> the source view's normalised space (``backend.train.validate.recon_to_view``: a uniform
   scale and shift that inverts the crop and resize, z scaled like x);
2. view -> canonical: the view's calib is ``diag(1, -1, 1) @ R`` with R rotating canonical points into
   the view's y-up frame, so canonical = R^T view.

Both steps are similarities with positive determinant, so faces keep their counter-clockwise winding.
:func:`canonical_to_recon` is the exact inverse (the GT "as the reconstruction would see it"), used to
check the path end to end.
"""

from __future__ import annotations

import numpy as np

from backend.errors import InputError
from backend.train.validate import recon_to_view

__all__ = ["canonical_to_recon", "canonical_to_reconstruction", "recon_to_canonical", "recon_to_view",
           "reconstruction_to_canonical", "view_rotation_from_calib"]


def view_rotation_from_calib(calib: np.ndarray) -> np.ndarray:
    """R (3x3) rotating canonical points into the view's y-up frame: the calib without its y flip."""
    calib = np.asarray(calib, dtype=np.float64)
    if calib.shape != (4, 4):
        raise InputError(f"a calib is a 4x4 matrix, got shape {calib.shape}")
    rot = np.diag([1.0, -1.0, 1.0]) @ calib[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-5) or np.linalg.det(rot) <= 0:
        raise InputError("the view's calib is not diag(1, -1, 1) times a rotation "
                         "(not a calib written by avatex render)")
    return rot


def recon_to_canonical(vertices: np.ndarray, crop: tuple[int, int, int], image_hw: tuple[int, int],
                       size: int, calib: np.ndarray) -> np.ndarray:
    """Reconstruction vertices (framed space) -> canonical space of the view the image was taken from.

    ``crop`` is ``(top, left, side)`` of the framing (``Reconstruction.stats["crop"]``), ``image_hw`` the
    source image's (height, width), ``size`` the model's input size, ``calib`` the view's calib.
    Returns float32 (N, 3).
    """
    view = recon_to_view(vertices, tuple(int(c) for c in crop), image_hw, int(size))
    rot = view_rotation_from_calib(calib)
    return (view @ rot).astype(np.float32)  # rows: (R^T v)^T = v^T R


def reconstruction_to_canonical(vertices: np.ndarray, stats: dict, calib: np.ndarray) -> np.ndarray:
    """:func:`recon_to_canonical` with the framing read from ``Reconstruction.stats`` (``crop``,
    ``image_size``, ``input_size``), e.g. a reconstruction that came over the wire."""
    return recon_to_canonical(vertices, *_framing(stats), calib)


def canonical_to_reconstruction(points: np.ndarray, stats: dict, calib: np.ndarray) -> np.ndarray:
    """:func:`canonical_to_recon` with the framing read from ``Reconstruction.stats``: canonical points
    (e.g. GT surface samples) in the space the reconstruction's networks were queried in."""
    return canonical_to_recon(points, *_framing(stats), calib)


def _framing(stats: dict) -> tuple[tuple[int, int, int], tuple[int, int], int]:
    """(crop, image (height, width), input size) from ``Reconstruction.stats``."""
    try:
        crop = stats["crop"]
        if isinstance(crop, dict):
            crop = (crop["top"], crop["left"], crop["side"])
        image_hw = (int(stats["image_size"][0]), int(stats["image_size"][1]))
        size = int(stats["input_size"])
    except (KeyError, TypeError, IndexError) as exc:
        raise InputError(f"the reconstruction's stats lack its framing ({exc}); they need 'crop', "
                         "'image_size' and 'input_size' (backend.recon.reconstruct writes them)") from None
    return tuple(int(c) for c in crop), image_hw, size


def canonical_to_recon(points: np.ndarray, crop: tuple[int, int, int], image_hw: tuple[int, int],
                       size: int, calib: np.ndarray) -> np.ndarray:
    """The inverse of :func:`recon_to_canonical`: canonical points -> the framed image's space."""
    top, left, side = (float(c) for c in crop)
    h, w = image_hw
    k = side / size
    view = np.asarray(points, dtype=np.float64) @ view_rotation_from_calib(calib).T

    def to_framed(coord: np.ndarray, start: float, extent: int) -> np.ndarray:
        pixel = (coord + 1.0) * 0.5 * (extent - 1)          # source pixel (column or row)
        framed_pixel = (pixel + 0.5 - start) / k - 0.5       # framed pixel, PIL's resize mapping
        return framed_pixel / (size - 1) * 2.0 - 1.0

    out = np.empty_like(view)
    out[:, 0] = to_framed(view[:, 0], left, w)
    out[:, 1] = -to_framed(-view[:, 1], top, h)
    out[:, 2] = view[:, 2] * (w - 1) / (k * (size - 1))
    return out
