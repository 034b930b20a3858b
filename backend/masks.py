"""Automatic person masks for photos that have no alpha channel: image in, mask out, nothing downloaded.

PIFu needs the subject's silhouette; a photo does not carry one. Two methods, both offline:

- ``"pose"``: the full-body pose model that ships *inside* the mediapipe 0.10.21 wheel
  (``pose_landmark_full.tflite`` with its person detector), whose segmentation output is a person mask.
  It is the optional extra ``avatex[masks]``; on held-out avatars composited onto real photographs its
  IoU against the true alpha is 0.94-0.97 (docs/api.md, "Person masks").
- ``"grabcut"``: OpenCV's GrabCut seeded with the image border as background and a centred box as
  probable subject. Classical, always installed, good on plain backgrounds and weaker on busy ones; it is
  what ``"auto"`` falls back to when mediapipe is missing or finds no person.

Everything here is a pure function of the pixels (no files), so the CLI, the server and the tests share it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from backend.errors import InputError, NotAvailableError

METHODS = ("auto", "pose", "grabcut")
MASKS_EXTRA = "pip install 'avatex[masks]' (mediapipe 0.10.21, which ships the pose model)"

_pose_lock = threading.Lock()
_pose_model = None


@dataclass(frozen=True)
class PersonMask:
    """A mask and how it was made: ``mask`` uint8 (H, W), 255 = person; ``method`` "pose" or "grabcut"."""

    mask: np.ndarray
    method: str
    note: str = ""


def has_cutout(image: np.ndarray) -> bool:
    """True when the image's alpha channel marks a subject (RGBA with some transparent pixels).

    The same rule as the framing's: an alpha that is opaque everywhere marks nothing.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 4:
        return False
    alpha = img[:, :, 3]
    threshold = 127 if alpha.dtype == np.uint8 else 0.5
    return bool((alpha <= threshold).any())


def mediapipe_available() -> bool:
    """Whether the pose model can be used (the ``masks`` extra is installed)."""
    import importlib.util

    return importlib.util.find_spec("mediapipe") is not None


def person_mask(image: np.ndarray, method: str = "auto") -> PersonMask:
    """The person in ``image`` (uint8 (H, W, 3|4); alpha ignored) as a mask.

    ``method``: ``"pose"`` (mediapipe; :class:`NotAvailableError` naming the extra when it is missing,
    :class:`InputError` when it finds no person), ``"grabcut"``, or ``"auto"``: pose when installed and
    it finds a person, else GrabCut (the ``note`` says why).
    """
    if method not in METHODS:
        raise InputError(f"unknown mask method {method!r}; choose one of {', '.join(METHODS)}")
    rgb = _rgb(image)
    if method == "grabcut":
        return PersonMask(grabcut_mask(rgb), "grabcut")
    if method == "pose" or mediapipe_available():
        try:
            return PersonMask(pose_mask(rgb), "pose")
        except InputError as exc:
            if method == "pose":
                raise
            note = str(exc)
    else:
        note = f"the pose model is not installed: {MASKS_EXTRA}"
    return PersonMask(grabcut_mask(rgb), "grabcut", note)


def pose_mask(rgb: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """mediapipe's full-body pose segmentation of ``rgb`` (uint8 (H, W, 3)), thresholded to 0/255."""
    if not mediapipe_available():
        raise NotAvailableError(f"automatic person masks need the pose model: {MASKS_EXTRA}; "
                                "or use --mask-method grabcut")
    global _pose_model
    with _pose_lock:   # one graph per process; mediapipe's graph is not safe to share between threads
        if _pose_model is None:
            # Before the first import: mediapipe's C++ side logs its graph set-up to stderr otherwise.
            os.environ.setdefault("GLOG_minloglevel", "2")
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import mediapipe as mp

            # model_complexity 1 is the model inside the wheel (2 would be downloaded); static images.
            _pose_model = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                                 enable_segmentation=True)
        result = _pose_model.process(np.ascontiguousarray(rgb))
    if result.segmentation_mask is None:
        raise InputError("the pose model found no person in the image; pass a mask (--mask MASK)")
    mask = (np.asarray(result.segmentation_mask) > threshold).astype(np.uint8) * 255
    if not mask.any():
        raise InputError("the pose model found no person in the image; pass a mask (--mask MASK)")
    return _drop_specks(mask)


def grabcut_mask(rgb: np.ndarray, border: float = 0.04, iterations: int = 5, max_side: int = 320
                 ) -> np.ndarray:
    """GrabCut of ``rgb`` (uint8 (H, W, 3)): the outer ``border`` is background, the rest probable subject.

    Works at most ``max_side`` pixels on the long side (GrabCut's cost grows with the pixel count and the
    silhouette does not need more) and returns the mask at the image's size.
    """
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = rgb if scale == 1.0 else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    bx, by = max(1, round(sw * border)), max(1, round(sh * border))
    if sw - 2 * bx < 2 or sh - 2 * by < 2:
        raise InputError(f"the image is too small for a mask ({w} × {h} pixels)")
    labels = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)   # GrabCut's colour models start from k-means: the same image gives the same mask
    cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), labels, (bx, by, sw - 2 * bx, sh - 2 * by),
                bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    mask = np.where((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    if scale != 1.0:
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
        mask = np.where(mask >= 128, 255, 0).astype(np.uint8)
    if not mask.any():
        raise InputError("GrabCut found no subject in the image; pass a mask (--mask MASK)")
    return _drop_specks(mask)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (nonzero / > 0.5 = inside)."""
    a, b = _binary(a), _binary(b)
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else float(np.count_nonzero(a & b) / union)


def _binary(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype == bool:
        return m
    return m > (127 if m.dtype == np.uint8 else 0.5)


def _rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise InputError(f"image must be (H, W, 3) or (H, W, 4), got shape {img.shape}")
    if img.dtype != np.uint8:
        if not np.issubdtype(img.dtype, np.floating):
            raise InputError(f"image must be uint8 or float in [0, 1], got {img.dtype}")
        img = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[:, :, :3])


def _drop_specks(mask: np.ndarray, share: float = 0.02) -> np.ndarray:
    """Drop regions under ``share`` of the largest one: background specks would widen the framing box,
    while an arm the mask cut off at the elbow is still part of the person."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= share * areas.max()) + 1
    return np.where(np.isin(labels, keep), 255, 0).astype(np.uint8)

def composite(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``rgba`` (uint8 (H, W, 4)) over ``background`` (uint8 RGB, any size; scaled to cover and centre-
    cropped): a photo-like RGB image whose true person mask is ``rgba``'s alpha (how the tests measure)."""
    from PIL import Image

    h, w = rgba.shape[:2]
    bg = Image.fromarray(_rgb(background))
    scale = max(w / bg.width, h / bg.height)
    bg = bg.resize((max(w, round(bg.width * scale)), max(h, round(bg.height * scale))), Image.LANCZOS)
    left, top = (bg.width - w) // 2, (bg.height - h) // 2
    back = np.asarray(bg, dtype=np.float32)[top:top + h, left:left + w]
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    out = rgba[:, :, :3].astype(np.float32) * alpha + back * (1.0 - alpha)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
