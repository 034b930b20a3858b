"""Dataset rendering end to end through ``avatex render``: formats, projection consistency, the reader,
bad input among good input, resume and settings checks. Real Blender (bpy wheel), real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from avatex_core import canonical
from avatex_core.lighting import PAPER_LEVELS
from backend.data.dataset import Dataset, DatasetError
from tests.conftest import ROOT
from tests.helpers.render import (
    avatar,
    broken_files,
    cli,
    fbx_from,
    glb_with_factor,
    read_rgba,
    render,
    two_material_obj,
)

pytestmark = pytest.mark.blender

ARGS = ["--views", "4", "--step", "90", "--resolution", "96", "--samples", "4", "--test-fraction", "0.5"]


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    folder = tmp_path_factory.mktemp("subjects")
    return {"avatar_0000": avatar("avatar_0000", ".obj"), "avatar_0001": avatar("avatar_0001", ".ply"),
            "two": two_material_obj(folder / "two"), "factor": glb_with_factor(folder / "factor.glb"),
            "fbx": fbx_from(avatar("avatar_0002", ".obj"), folder / "fbx_avatar.fbx"),
            "bad": broken_files(folder / "bad")}


@pytest.fixture(scope="module")
def rendered(subjects, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset") / "ds"
    good = [subjects[k] for k in ("avatar_0000", "avatar_0001", "two", "factor", "fbx")]
    proc = cli(["--meshes", *good, *subjects["bad"], "--out", out, "--workers", "2", *ARGS])
    return out, proc


def _projection(ds: Dataset, sid: str, view: int, calib: np.ndarray | None = None):
    """(share of visible GT vertices on covered pixels, mask bbox, projected bbox) for one view."""
    mesh = ds.gt_mesh(sid)
    alpha = ds.mask(sid, view)
    size = alpha.shape[0]
    uvz = canonical.project(mesh.vertices, ds.calib(sid, view) if calib is None else calib)
    px = canonical.to_pixels(uvz[:, :2], size)
    ij = np.clip(np.rint(px).astype(int), 0, size - 1)
    zbuf = np.full((size, size), -np.inf)  # visibility: a vertex z-buffer (z grows toward the camera)
    np.maximum.at(zbuf, (ij[:, 1], ij[:, 0]), uvz[:, 2])
    visible = uvz[:, 2] >= zbuf[ij[:, 1], ij[:, 0]] - 0.02
    inside = alpha[ij[:, 1], ij[:, 0]] > 0
    ys, xs = np.nonzero(alpha > 0.5)
    mask_box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=float)
    proj_box = np.array([px[:, 0].min(), px[:, 1].min(), px[:, 0].max(), px[:, 1].max()])
    return float(inside[visible].mean()), mask_box, proj_box


def test_bad_meshes_are_reported_and_the_others_rendered(rendered):
    out, proc = rendered
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "broken.ply" in text and "notamesh.obj" in text
    assert "80 images rendered (20 views)" in proc.stdout and "2 subject(s) failed" in proc.stdout
    ds = Dataset(out)
    assert ds.subjects() == ["avatar_0000", "avatar_0001", "factor", "fbx_avatar", "two"]
    assert set(ds.failed) == {"broken", "notamesh"}
    assert "broken.ply" in ds.failed["broken"] and "no mesh" in ds.failed["notamesh"]
    for sid in ds.subjects():
        assert ds.views_of(sid) == [0, 1, 2, 3]


def test_projection_consistency_every_view(rendered):
    ds = Dataset(rendered[0])
    for sid in ds.subjects():
        for view in ds.views_of(sid):
            share, mask_box, proj_box = _projection(ds, sid, view)
            assert share >= 0.99, (sid, view, share)
            assert np.abs(mask_box - proj_box).max() <= 2.0, (sid, view, mask_box, proj_box)


def test_projection_check_catches_a_two_pixel_error(rendered):
    ds = Dataset(rendered[0])
    calib = ds.calib("avatar_0000", 1).astype(np.float64)
    calib[0, 3] += 2 * 2.0 / (ds.resolution - 1)  # two pixels to the right
    share, mask_box, proj_box = _projection(ds, "avatar_0000", 1, calib)
    assert share < 0.99 or np.abs(mask_box - proj_box).max() > 2.0


def test_albedo_shows_the_gt_colours(rendered):
    """Unlit render == GT colours where the surface faces the camera (checks sRGB/linear handling)."""
    ds = Dataset(rendered[0])
    for sid in ds.subjects():
        mesh = ds.gt_mesh(sid)
        colors = mesh.per_vertex_colors()
        errors = []
        for view in ds.views_of(sid):
            albedo = ds.albedo(sid, view).astype(np.float64) / 255.0
            uvz = canonical.project(mesh.vertices, ds.calib(sid, view))
            px = np.rint(canonical.to_pixels(uvz[:, :2], ds.resolution)).astype(int)
            # Front-most vertex per pixel, on pixels fully covered by the subject.
            order = np.argsort(-uvz[:, 2])
            _, first = np.unique(px[order, 1] * ds.resolution + px[order, 0], return_index=True)
            front = order[first]
            # Only pixels inside a uniformly coloured patch: there a pixel's average colour must equal the
            # colour at the vertex exactly (texture detail smaller than a pixel would blur elsewhere).
            windows = np.lib.stride_tricks.sliding_window_view(np.pad(albedo, ((1, 1), (1, 1), (0, 0)),
                                                                      mode="edge"), (3, 3), axis=(0, 1))
            flat = (np.ptp(windows, axis=(-1, -2)).max(axis=-1) < 0.02) & (windows[..., 3, :, :].min(
                axis=(-1, -2)) == 1.0)
            front = front[flat[px[front, 1], px[front, 0]]]
            errors.append(np.abs(albedo[px[front, 1], px[front, 0], :3] - colors[front]).max(axis=1))
        err = np.concatenate(errors)
        assert len(err) > 50, sid
        assert np.median(err) <= 2.5 / 255 and np.mean(err < 8 / 255) > 0.9, (sid, np.median(err))


def test_reader_api_and_records(rendered):
    ds = Dataset(rendered[0])
    assert ds.levels == list(PAPER_LEVELS) and ds.resolution == 96  # the default levels
    assert sorted(ds.split("train") + ds.split("test")) == ds.subjects()
    assert len(ds) == 5 * 4 * 3
    item = ds[5]
    assert item["image"].shape == (96, 96, 4) and item["image"].dtype == np.uint8
    assert item["albedo"].shape == (96, 96, 4) and item["mask"].max() == 1.0
    np.testing.assert_allclose(item["mask"], item["image"][..., 3] / 255.0, atol=1e-6)
    seeds = set()
    for sid in ds.subjects():
        info = ds.subject_info(sid)
        mesh = ds.gt_mesh(sid)
        assert info["mesh"]["vertices"] >= 4 and len(mesh.faces) == info["mesh"]["faces"]
        assert np.ptp(mesh.vertices[:, 1]) == pytest.approx(canonical.CANONICAL_HEIGHT, rel=1e-4)
        assert ds.normalization(sid).up_axis in ("y", "z")
        for view in ds.views_of(sid):
            record = ds.record(sid, view)
            yaw = ds.views[view]["yaw"]
            assert record["yaw"] == yaw == 90.0 * view
            np.testing.assert_allclose(ds.calib(sid, view), canonical.calib_for_view(yaw), atol=1e-7)
            assert record["camera"]["ortho_scale"] == pytest.approx(canonical.ortho_scale(96))
            for level in ds.levels:
                light = ds.light(sid, view, level)
                assert light["level"] == level and light["kind"] == "point"
                assert set(light) >= {"position_camera", "ambient", "diffuse", "color", "radius", "falloff"}
                seeds.add(ds.seed(sid, view, level))
    assert len(seeds) == 5 * 4 * 3
    with pytest.raises(DatasetError, match="not in the dataset"):
        ds.gt_mesh("broken")


def test_gt_meshes_keep_the_colour_sources(rendered, subjects):
    ds = Dataset(rendered[0])
    assert ds.subject_info("avatar_0001")["mesh"]["colors"] == "vertex"
    assert ds.gt_mesh_path("avatar_0001").suffix == ".ply"
    two = ds.subject_info("two")
    assert two["mesh"]["colors"] == "texture" and two["mesh"]["textures"] == 2
    assert len(ds.gt_mesh("two").textures) == 2
    # glTF baseColorFactor 0.5 multiplies the texture (in linear light, as Blender's shader does).
    tex = ds.gt_mesh("factor").textures[0].astype(np.float64) / 255.0
    expected = 1.055 * (((240 / 255 + 0.055) / 1.055) ** 2.4 * 0.5) ** (1 / 2.4) - 0.055
    assert tex[..., 0].mean() == pytest.approx(expected, abs=2 / 255)
    assert ds.subject_info("avatar_0000")["source"] == str(subjects["avatar_0000"])
    fbx = ds.subject_info("fbx_avatar")
    assert fbx["mesh"]["colors"] == "texture" and fbx["source"].endswith(".fbx")


def test_rerun_skips_finished_views(rendered, subjects):
    out, _ = rendered
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    good = [subjects[k] for k in ("avatar_0000", "avatar_0001", "two", "factor", "fbx")]
    proc = cli(["--meshes", *good, "--out", out, *ARGS])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 images rendered" in proc.stdout and "20 finished views skipped" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before


def test_other_settings_are_refused(rendered, subjects):
    out, _ = rendered
    proc = cli(["--meshes", subjects["avatar_0001"], "--out", out, *ARGS, "--resolution", "128"])
    assert proc.returncode == 2
    assert "rendered with other settings (resolution: 96 in the dataset, 128 now)" in proc.stderr


def test_bad_arguments_fail_before_rendering(tmp_path, subjects):
    proc = cli(["--meshes", subjects["avatar_0001"], "--out", tmp_path / "x", "--levels", "wild,sunny"])
    assert proc.returncode == 2 and "unknown lighting level 'sunny'" in proc.stderr
    proc = cli(["--meshes", tmp_path / "none.obj", "--out", tmp_path / "x"])
    assert proc.returncode == 2 and "none.obj: no such file" in proc.stderr
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_eevee_without_a_gpu_is_a_clear_error(tmp_path, subjects):
    rc, events, _ = render(["--meshes", subjects["avatar_0001"], "--out", tmp_path / "e", "--engine", "eevee",
                            "--views", "1", "--resolution", "32"])
    fatal = [e for e in events if e["event"] == "fatal"]
    if rc == 0:
        pytest.skip("this machine has a GPU: EEVEE rendered")
    assert rc == 2 and "EEVEE renders need a GPU" in fatal[0]["error"]


def test_reader_rejects_what_it_cannot_read(tmp_path, rendered):
    with pytest.raises(DatasetError, match="not an avatex dataset"):
        Dataset(tmp_path)
    manifest = json.loads((rendered[0] / "manifest.json").read_text())
    for version, message in ((2, "newer than this reader"), (0, "re-render")):
        folder = tmp_path / f"v{version}"
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({**manifest, "format_version": version}))
        with pytest.raises(DatasetError, match=message):
            Dataset(folder)


def test_images_are_rgba_with_a_transparent_background(rendered):
    ds = Dataset(rendered[0])
    for level in ds.levels:
        img = read_rgba(ds.view_dir("avatar_0000", 0) / f"{level}.png")
        assert img[0, 0, 3] == 0 and img[:, :, 3].max() == 255
        assert (img[..., 3] == 0).mean() > 0.5  # most of the frame is background


@pytest.mark.slow
def test_relative_paths_from_another_folder(tmp_path):
    """Workers run in the repository root: --meshes, --out and --light-config relative to the caller's
    folder must still name the caller's files (a relative --out once failed on its subject list)."""
    (tmp_path / "in").mkdir()
    shutil.copy(avatar("avatar_0001", ".ply"), tmp_path / "in" / "person.ply")
    (tmp_path / "levels.toml").write_text("[levels.top]\nposition = [0.0, 3.0, 0.5]\nambient = 0.3\n"
                                          "diffuse = 0.5\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--meshes", "in/person.ply", "--out", "ds", "--views", "2", "--step", "180", "--resolution", "64",
            "--samples", "1", "--levels", "clear,top", "--light-config", "levels.toml"]
    proc = subprocess.run([sys.executable, "-m", "backend", "render", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 images rendered (2 views)" in proc.stdout
    ds = Dataset(tmp_path / "ds")
    assert ds.subjects() == ["person"] and ds.views_of("person") == [0, 1]
    for view in (0, 1):
        for name in ("albedo.png", "clear.png", "top.png"):
            assert read_rgba(ds.view_dir("person", view) / name).shape == (64, 64, 4)
    assert not (ROOT / "ds").exists() and not (ROOT / "in").exists()
