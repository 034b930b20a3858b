"""Random poses for anny's rig within sensible joint limits (``avatex synth --poses``).

Real photos show people in every pose, while a rest-pose-only training set teaches one pose. anny takes
a pose as per-bone delta transforms (``pose_parameters``: bone label -> 4x4), by default in its
``local-ref`` parameterisation: a rotation about the bone's joint in **world-aligned axes** (anny's
world: z up, the body facing -y, its left side on +x). That makes the limits readable:

* a rotation about +x by a negative angle swings a hanging limb forward (towards -y); a positive one
  swings it back. Elbows therefore flex over negative x-angles, knees over positive ones;
* a rotation about y tilts in the frontal plane (abduction), about z turns about the vertical.

The limits are deliberately modest (everyday standing, walking and gesturing poses, no self-contact),
and mirrored for the right side (``.R``) by flipping the sign of the y and z angles. Bones not matched
keep the rest pose (fingers, face, toes). The sampler is pure numpy so its limits are testable without
building anny.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Range = tuple[float, float]
POSE_LIMITS_DEG: dict[str, tuple[Range, Range, Range]] = {
    # bone name prefix: (x range, y range, z range) in degrees, for the left side (.L) or the midline.
    # Only the first bone of each chain is posed (anny splits limbs into 01/02 and the spine into five).
    "spine0": ((-3.0, 3.0), (-2.0, 2.0), (-4.0, 4.0)),
    "neck01": ((-15.0, 15.0), (-10.0, 10.0), (-20.0, 20.0)),
    "head": ((-10.0, 10.0), (-8.0, 8.0), (-20.0, 20.0)),
    "upperarm01": ((-60.0, 30.0), (-25.0, 25.0), (-20.0, 20.0)),
    "lowerarm01": ((-90.0, 0.0), (0.0, 0.0), (-15.0, 15.0)),
    "upperleg01": ((-40.0, 15.0), (-15.0, 0.0), (-10.0, 10.0)),
    "lowerleg01": ((0.0, 60.0), (0.0, 0.0), (0.0, 0.0)),
}
"""Joint limits per bone. For the left thigh a negative y-angle moves the leg outwards (+x). The five
spine bones each take a fifth-ish share, so the whole spine bends at most about 15 degrees."""


def _family(label: str) -> str | None:
    name = label.lower()
    for family in POSE_LIMITS_DEG:
        if name.startswith(family):
            return family
    return None


def rotation_xyz(angles_deg: Sequence[float]) -> np.ndarray:
    """``Rz @ Ry @ Rx`` for angles (x, y, z) in degrees, as a 3x3 matrix."""
    x, y, z = np.radians(np.asarray(angles_deg, dtype=np.float64))
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def sample_angles(bone_labels: Sequence[str], rng: np.random.Generator, scale: float = 1.0
                  ) -> dict[str, tuple[float, float, float]]:
    """Euler angles (degrees) for every posable bone: uniform within its limits times ``scale``.

    ``scale`` below 1 narrows every range towards the rest pose.
    """
    if not 0.0 <= scale <= 1.0:
        raise ValueError(f"pose scale must be in [0, 1], got {scale}")
    out = {}
    for label in bone_labels:
        family = _family(label)
        if family is None:
            continue
        mirror = -1.0 if label.endswith(".R") else 1.0
        angles = []
        for axis, (lo, hi) in enumerate(POSE_LIMITS_DEG[family]):
            a = float(rng.uniform(lo, hi)) * scale if hi > lo else lo * scale
            angles.append(round(a * (mirror if axis > 0 else 1.0), 3))
        out[label] = (angles[0], angles[1], angles[2])
    return out


def pose_transforms(angles: dict[str, tuple[float, float, float]]) -> dict[str, np.ndarray]:
    """anny's ``pose_parameters`` (bone label -> 4x4 delta transform, no translation) for ``angles``."""
    out = {}
    for label, a in angles.items():
        m = np.eye(4)
        m[:3, :3] = rotation_xyz(a)
        out[label] = m
    return out
