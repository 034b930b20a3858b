"""The random pose sampler of ``avatex synth --poses`` (backend.data.synth.poses), without anny."""

from __future__ import annotations

import numpy as np
import pytest

from backend.data.synth.poses import POSE_LIMITS_DEG, pose_transforms, rotation_xyz, sample_angles

# Bone labels as anny's default rig names them (families the sampler knows, and ones it must leave alone).
LABELS = ["root", "pelvis.L", "spine05", "spine04", "neck01", "neck02", "head", "upperarm01.L",
          "upperarm01.R", "upperarm02.L", "lowerarm01.L", "lowerarm01.R", "upperleg01.L", "upperleg01.R",
          "lowerleg01.L", "lowerleg01.R", "lowerleg02.L", "finger2-1.L", "toe1-1.R", "jaw"]
POSED = {"spine05", "spine04", "neck01", "head", "upperarm01.L", "upperarm01.R", "lowerarm01.L",
         "lowerarm01.R", "upperleg01.L", "upperleg01.R", "lowerleg01.L", "lowerleg01.R"}


def test_angles_stay_within_the_joint_limits_and_mirror_on_the_right():
    rng = np.random.default_rng(0)
    for _ in range(200):
        angles = sample_angles(LABELS, rng)
        assert set(angles) == POSED  # one bone per chain; fingers, face and toes keep the rest pose
        for label, a in angles.items():
            family = next(f for f in POSE_LIMITS_DEG if label.lower().startswith(f))
            mirror = -1.0 if label.endswith(".R") else 1.0
            for axis, (lo, hi) in enumerate(POSE_LIMITS_DEG[family]):
                v = a[axis] * (mirror if axis > 0 else 1.0)
                assert lo - 1e-9 <= v <= hi + 1e-9, (label, axis, v)
        assert angles["lowerarm01.L"][0] <= 0.0 and angles["lowerleg01.R"][0] >= 0.0  # elbows, knees


def test_poses_vary_are_seeded_and_scale_to_rest():
    a = sample_angles(LABELS, np.random.default_rng(5))
    assert a == sample_angles(LABELS, np.random.default_rng(5))
    assert a != sample_angles(LABELS, np.random.default_rng(6))
    rest = sample_angles(LABELS, np.random.default_rng(5), scale=0.0)
    assert all(v == (0.0, 0.0, 0.0) for v in (tuple(abs(x) for x in t) for t in rest.values()))
    with pytest.raises(ValueError, match="scale"):
        sample_angles(LABELS, np.random.default_rng(0), scale=1.5)


def test_transforms_are_rotations_about_world_axes():
    m = pose_transforms({"lowerleg01.L": (30.0, 0.0, 0.0)})["lowerleg01.L"]
    r = m[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0) and np.all(m[:3, 3] == 0) and m[3, 3] == 1.0
    # A shin hanging along -z swings backwards (+y, the body faces -y) for a positive knee angle.
    shin = r @ np.array([0.0, 0.0, -1.0])
    np.testing.assert_allclose(shin, [0.0, np.sin(np.radians(30)), -np.cos(np.radians(30))], atol=1e-12)
    np.testing.assert_allclose(rotation_xyz((0, 0, 90)) @ [1.0, 0, 0], [0, 1.0, 0], atol=1e-12)
