"""Lighting on a white sphere: the calibration (white renders ambient / ambient + diffuse), the order of
the levels, HDRI, user-defined levels, and bit-exact re-renders from the stored records."""

from __future__ import annotations

import numpy as np
import pytest

from avatex_core.lighting import PAPER_LEVELS, linear_to_srgb, srgb_to_linear
from backend.data.dataset import Dataset
from tests.helpers.render import read_rgba, render, sphere_ply

pytestmark = pytest.mark.blender

SIZE = 128
CONFIG = """
[levels.front]
position = [0.0, 0.0, 6.0]
ambient = 0.3
diffuse = 0.4

[levels.back]
position = [0.0, 0.0, -6.0]
ambient = 0.3
diffuse = 0.4

[levels.side]
position = [6.0, 0.0, 0.0]
ambient = 0.25
diffuse = 0.5
color = [1.0, 0.6, 0.2]
"""
LEVELS = "wild,intermediate,clear,hdri,front,back,side"


@pytest.fixture(scope="module")
def sphere(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sphere")
    (folder / "levels.toml").write_text(CONFIG)
    mesh = sphere_ply(folder / "white.ply", color=(1.0, 1.0, 1.0), subdivisions=5)
    out = folder / "ds"
    rc, events, err = render(["--meshes", mesh, "--out", out, "--views", "2", "--step", "90",
                              "--resolution", SIZE, "--samples", "16", "--levels", LEVELS,
                              "--light-config", folder / "levels.toml"])
    assert rc == 0, (events, err)
    return Dataset(out)


def _sphere_geometry(ds: Dataset):
    """Per pixel: canonical surface point and normal of the sphere (radius from the GT mesh)."""
    mesh = ds.gt_mesh("white")
    radius = float(np.abs(mesh.vertices).max(axis=0).mean())
    c = (np.arange(SIZE) / (SIZE - 1)) * 2 - 1
    x, y = np.meshgrid(c, -c)  # image row 0 is the top (+y)
    z = np.sqrt(np.clip(radius ** 2 - x ** 2 - y ** 2, 0, None))
    points = np.stack([x, y, z], axis=-1)
    return points, points / radius


def _interior(img: np.ndarray) -> np.ndarray:
    a = img[..., 3] == 255
    return a & np.roll(a, 2, 0) & np.roll(a, -2, 0) & np.roll(a, 2, 1) & np.roll(a, -2, 1)


def test_white_sphere_matches_the_calibration(sphere):
    """Every interior pixel of the yaw-0 view equals the analytic Lambert + ambient prediction."""
    points, normals = _sphere_geometry(sphere)
    for level in ("front", "back", "side"):
        light = sphere.light("white", 0, level)
        raw = sphere.image("white", 0, level)
        inside = _interior(raw)
        img = raw.astype(np.float64) / 255.0
        to_light = np.asarray(light["position_camera"]) - points
        to_light /= np.linalg.norm(to_light, axis=-1, keepdims=True)
        cosine = np.clip((normals * to_light).sum(-1), 0, None)
        a = srgb_to_linear(light["ambient"])
        d = srgb_to_linear(light["ambient"] + light["diffuse"] * np.asarray(light["color"])) - a
        expected = linear_to_srgb(a + d * cosine[..., None])
        err = np.abs(img[..., :3] - expected)[inside]
        assert np.median(err) < 0.005 and np.percentile(err, 99) < 0.015, (level, np.median(err))
    # The anchor values themselves: white facing the light = ambient + diffuse; facing away = ambient.
    centre = SIZE // 2
    front = sphere.image("white", 0, "front")[centre, centre, :3] / 255.0
    np.testing.assert_allclose(front, 0.7, atol=0.01)
    back = sphere.image("white", 0, "back")[..., :3][_interior(sphere.image("white", 0, "back"))] / 255.0
    np.testing.assert_allclose(np.median(back), 0.3, atol=0.006)


def _shadow_and_range(img: np.ndarray) -> tuple[float, float]:
    lum = img[..., :3].astype(np.float64).mean(-1)[_interior(img)] / 255.0
    return float(np.percentile(lum, 2)), float(np.percentile(lum, 98) - np.percentile(lum, 2))


def test_levels_order_as_designed(sphere):
    """wild darkest on the shadow side, clear the most even, in every view."""
    for view in sphere.views_of("white"):
        stats = {lv: _shadow_and_range(sphere.image("white", view, lv))
                 for lv in PAPER_LEVELS}
        assert stats["wild"][0] < stats["intermediate"][0] < stats["clear"][0], stats
        assert stats["clear"][1] < stats["intermediate"][1] and stats["clear"][1] < stats["wild"][1], stats
        # The shadow side of the wild light sits at the sampled ambient level.
        assert stats["wild"][0] == pytest.approx(sphere.light("white", view, "wild")["ambient"], abs=0.03)


def test_hdri_level_records_its_environment(sphere):
    light = sphere.light("white", 1, "hdri")
    assert light["kind"] == "hdri" and light["environment"] in (
        "city", "courtyard", "forest", "interior", "night", "studio", "sunrise", "sunset")
    img = sphere.image("white", 1, "hdri")
    mean = img[..., :3][_interior(img)].mean() / 255.0
    assert 0.2 < mean < 0.95  # normalised to a sensible exposure
    blender = sphere.record("white", 1)["images"]["hdri"]["blender"]
    assert blender["world_strength"] > 0 and blender["environment_mean_radiance"] > 0


@pytest.mark.slow
def test_recorded_parameters_re_render_the_same_image(sphere, tmp_path):
    for view, level in ((1, "wild"), (0, "hdri"), (1, "side"), (0, "albedo")):
        out = tmp_path / f"{view}_{level}.png"
        rc, events, err = render(["--out", sphere.root, "--rerender", "white", f"v{view:03d}", level, out])
        assert rc == 0, (events, err)
        name = "albedo.png" if level == "albedo" else f"{level}.png"
        np.testing.assert_array_equal(read_rgba(out), read_rgba(sphere.view_dir("white", view) / name))


def test_a_different_light_gives_a_different_image(sphere):
    a = sphere.image("white", 0, "wild").astype(int)
    b = sphere.image("white", 1, "wild").astype(int)
    assert np.abs(a - b).max() > 40  # the records differ, and so do the pixels
