import numpy as np
import pytest

from avatex_core import canonical as C


def test_yaw0_calib_is_pifu_eval_calib():
    np.testing.assert_allclose(C.calib_for_view(0.0), np.diag([1.0, -1.0, 1.0, 1.0]))


def test_calib_rotation_matches_camera_pose():
    # A point on the camera's optical axis (in front of the subject) projects to the image centre,
    # and the camera's right axis projects to +x.
    for yaw, pitch in [(0, 0), (8, 0), (90, 0), (352, 0), (40, 10)]:
        pose = C.camera_to_canonical(yaw, pitch, distance=5.0)
        calib = C.calib_for_view(yaw, pitch)
        eye = pose[:3, 3]
        uvz = C.project(eye[None], calib)[0]
        np.testing.assert_allclose(uvz[:2], 0.0, atol=1e-12)
        assert uvz[2] == pytest.approx(5.0)
        right = C.project(pose[:3, 0][None], calib)[0]
        np.testing.assert_allclose(right, [1.0, 0.0, 0.0], atol=1e-12)
        up = C.project(pose[:3, 1][None], calib)[0]
        np.testing.assert_allclose(up, [0.0, -1.0, 0.0], atol=1e-12)  # image y points down


def test_yaw_90_sees_the_subjects_left_side():
    # Subject rotated by +90 deg about y: its +x side (subject's left arm for a subject facing +z)
    # turns toward -z, away from the camera, and its +z front turns to +x.
    calib = C.calib_for_view(90.0)
    np.testing.assert_allclose(C.project([[0, 0, 1]], calib)[0], [1, 0, 0], atol=1e-12)


def test_normalization_units_and_up_axis():
    rng = np.random.default_rng(0)
    body_m = rng.normal(size=(500, 3)) * [0.2, 0.1, 0.5] + [0.3, -1.0, 0.9]  # z-up, metres
    n_m = C.normalization_for(body_m)
    n_cm = C.normalization_for(body_m * 100.0)
    assert n_m.up_axis == "z"
    np.testing.assert_allclose(n_m.apply(body_m), n_cm.apply(body_m * 100.0), atol=1e-9)
    can = n_m.apply(body_m)
    assert np.ptp(can[:, 1]) == pytest.approx(C.CANONICAL_HEIGHT)
    assert can[:, 1].max() == pytest.approx(-can[:, 1].min())
    np.testing.assert_allclose(np.median(can[:, [0, 2]], axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(n_m.invert(can), body_m, atol=1e-9)
    m = n_m.matrix()
    np.testing.assert_allclose(body_m @ m[:3, :3].T + m[:3, 3], can, atol=1e-9)


def test_z_up_front_faces_camera():
    # A z-up subject facing -y: its nose (at -y) ends up toward the yaw-0 camera (+z).
    pts = np.array([[0, 0, 0], [0, 0, 1.8], [0, -0.2, 1.6], [0.1, 0, 0.9], [-0.1, 0.05, 0.5]])
    n = C.normalization_for(pts, up_axis="z")
    nose = n.apply(pts)[2]
    assert nose[2] > 0 and nose[1] > 0


def test_pixel_convention_matches_align_corners():
    np.testing.assert_allclose(C.to_pixels(np.array([[-1.0, -1.0], [1.0, 1.0]]), 512), [[0, 0], [511, 511]])
    # The camera spans a bit more than 2 units so that +-1 are pixel centres.
    w = 512
    pixel = C.ortho_scale(w) / w
    assert 1.0 - 0.5 * pixel == pytest.approx(C.ortho_scale(w) / 2 - pixel)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="non-finite"):
        C.normalization_for(np.array([[0, 0, 0], [1, 1, 1], [np.nan, 0, 0], [0, 2, 0]]))
    with pytest.raises(ValueError, match="up_axis"):
        C.normalization_for(np.eye(4)[:, :3], up_axis="x")
