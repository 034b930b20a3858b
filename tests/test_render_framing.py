"""Units and up axes: a scan in centimetres and in metres, z-up and y-up, frames identically."""

from __future__ import annotations

import numpy as np
import pytest

from backend.data.dataset import Dataset
from tests.helpers.render import avatar, render

pytestmark = pytest.mark.blender

ARGS = ["--views", "2", "--step", "90", "--resolution", "64", "--samples", "16", "--levels", "clear"]


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    import trimesh

    folder = tmp_path_factory.mktemp("framing")
    src = trimesh.load(avatar("avatar_0003", ".ply"), process=False)
    v = np.asarray(src.vertices, dtype=np.float64)  # z-up metres, facing -y
    colors = np.asarray(src.visual.vertex_colors)
    paths = {}
    for name, verts in (("m_zup", v), ("cm_zup", v * 100.0), ("m_yup", v[:, [0, 2, 1]] * [1, 1, -1])):
        mesh = trimesh.Trimesh(verts, src.faces, vertex_colors=colors, process=False)
        paths[name] = folder / f"{name}.ply"
        mesh.export(paths[name])
    out = folder / "ds"
    rc, events, err = render(["--meshes", *paths.values(), "--out", out, *ARGS])
    assert rc == 0, (events, err)
    return Dataset(out), folder


@pytest.mark.slow
def test_up_axis_is_detected(variants):
    ds, _ = variants
    assert ds.normalization("m_zup").up_axis == "z"
    assert ds.normalization("cm_zup").up_axis == "z"
    assert ds.normalization("m_yup").up_axis == "y"
    assert ds.normalization("cm_zup").scale == pytest.approx(ds.normalization("m_zup").scale / 100.0)


def test_cm_m_z_up_and_y_up_give_the_same_framing(variants):
    ds, _ = variants
    ref = ds.gt_mesh("m_zup").vertices
    for sid in ("cm_zup", "m_yup"):
        np.testing.assert_allclose(ds.gt_mesh(sid).vertices, ref, atol=1e-5)
        for view in (0, 1):
            a = ds.albedo("m_zup", view).astype(int)
            b = ds.albedo(sid, view).astype(int)
            # Same silhouette (the per-image seeds differ by subject id, so antialiased edges may not).
            sa, sb = a[..., 3] > 127, b[..., 3] > 127
            assert (sa != sb).sum() <= 0.04 * sa.sum(), (sid, view)
            ya, xa = np.nonzero(sa)
            yb, xb = np.nonzero(sb)
            assert (ya.min(), ya.max(), xa.min(), xa.max()) == (yb.min(), yb.max(), xb.min(), xb.max())
            assert np.abs(a - b).mean() < 3.0, (sid, view)  # of 255, over the whole frame
    # The z-up scan faces -y: after normalisation it faces the yaw-0 camera (+z): the toes reach much
    # further forward (+z) from the shins than the heels reach back.
    low = ref[:, 1].min()
    feet = ref[ref[:, 1] < low + 0.08, 2]
    shins = np.median(ref[(ref[:, 1] > low + 0.15) & (ref[:, 1] < low + 0.3), 2])
    assert feet.max() - shins > 2 * (shins - feet.min())


@pytest.mark.slow
def test_up_flag_overrides_detection(variants, tmp_path):
    import trimesh

    _, folder = variants
    # A y-up slab deeper than tall: auto detection takes z as up; --up y keeps y.
    box = trimesh.creation.box(extents=(0.5, 1.0, 2.0))
    box.visual.vertex_colors = [200, 100, 50, 255]
    path = tmp_path / "slab.ply"
    box.export(path)
    for flag, expected in (("auto", "z"), ("y", "y")):
        out = tmp_path / f"ds_{flag}"
        rc, events, err = render(["--meshes", path, "--out", out, "--views", "1", "--resolution", "32",
                                  "--samples", "1", "--levels", "clear", "--up", flag])
        assert rc == 0, (events, err)
        assert Dataset(out).normalization("slab").up_axis == expected


def test_pitched_views_project_consistently(tmp_path):
    from avatex_core import canonical

    out = tmp_path / "ds"
    rc, events, err = render(["--meshes", avatar("avatar_0001", ".ply"), "--out", out, "--views", "2",
                              "--step", "90", "--pitch", "0", "25", "--resolution", "96", "--samples", "2",
                              "--levels", "clear"])
    assert rc == 0, (events, err)
    ds = Dataset(out)
    assert [v["pitch"] for v in ds.views] == [0.0, 0.0, 25.0, 25.0]
    assert ds.views_of("avatar_0001") == [0, 1, 2, 3]
    mesh = ds.gt_mesh("avatar_0001")
    for view in (2, 3):
        np.testing.assert_allclose(ds.calib("avatar_0001", view),
                                   canonical.calib_for_view(ds.views[view]["yaw"], 25.0), atol=1e-6)
        alpha = ds.mask("avatar_0001", view)
        px = canonical.to_pixels(canonical.project(mesh.vertices, ds.calib("avatar_0001", view))[:, :2], 96)
        ij = np.clip(np.rint(px).astype(int), 0, 95)
        assert (alpha[ij[:, 1], ij[:, 0]] > 0).mean() > 0.99  # every vertex lies on the silhouette
        ys, xs = np.nonzero(alpha > 0.5)
        box = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
        assert np.abs(box - [px[:, 0].min(), px[:, 1].min(), px[:, 0].max(), px[:, 1].max()]).max() <= 2
