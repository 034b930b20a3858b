"""PATD / PIPATD against a direct implementation (colour-science + scipy cKDTree), and their properties."""

from __future__ import annotations

import colour
import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from avatex_core.progress import Progress
from backend.errors import CancelledError, InputError
from backend.meshio import ColoredMesh, sample_surface
from backend.metrics import TextureDistance, texture_distance


def direct_patd(pred_vertices, pred_colors, gt_points, gt_colors, k):
    """The definition written plainly: nearest GT points by KD-tree, ΔE00 by colour-science."""
    def lab(rgb):
        return colour.XYZ_to_Lab(colour.sRGB_to_XYZ(np.clip(np.asarray(rgb, dtype=np.float64), 0, 1)))

    _, idx = cKDTree(gt_points).query(pred_vertices, k=k)
    idx = np.asarray(idx).reshape(len(pred_vertices), k)
    de = colour.delta_E(lab(pred_colors)[:, None, :], lab(gt_colors)[idx], method="CIE 2000")
    return de[:, 0], de.min(axis=1), idx[:, 0]


def body_like_gt(rng: np.random.Generator, subdivisions: int = 4) -> ColoredMesh:
    """A lumpy sphere with smoothly varying vertex colours plus noise (colours with structure)."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = np.asarray(sphere.vertices)
    v = v * (1.0 + 0.15 * np.sin(3 * v[:, :1]) * np.cos(2 * v[:, 1:2]))
    colors = 0.5 + 0.4 * np.sin(np.array([3.0, 5.0, 7.0]) * v[:, [0, 1, 2]] + rng.uniform(0, 6, 3))
    colors = np.clip(colors + 0.05 * rng.standard_normal(colors.shape), 0, 1).astype(np.float32)
    return ColoredMesh(vertices=v, faces=np.asarray(sphere.faces, dtype=np.int64), vertex_colors=colors)


def prediction_near(gt: ColoredMesh, rng: np.random.Generator, n: int, noise: float = 0.02):
    points, face, bary = sample_surface(gt, n, rng)
    points = points + noise * rng.standard_normal(points.shape)
    colors = np.clip(gt.colors_at(face, bary) + 0.1 * rng.standard_normal((n, 3)), 0, 1)
    return points, colors


@pytest.mark.parametrize("k", [1, 3, 8])
def test_equals_direct_implementation_vertex_gt(k):
    rng = np.random.default_rng(k)
    gt = body_like_gt(rng)
    pv, pc = prediction_near(gt, rng, 4000)
    result = texture_distance(pv, pc, gt, k=k, device="cpu")
    patd, pipatd, nearest = direct_patd(pv, pc, gt.vertices, gt.vertex_colors, k)
    assert result.gt_kind == "vertices" and result.gt_points == len(gt.vertices) and result.k == k
    assert result.patd.dtype == np.float32 and result.pipatd.dtype == np.float32
    assert result.nearest.dtype == np.int64
    np.testing.assert_array_equal(result.nearest, nearest)
    np.testing.assert_allclose(result.patd, patd, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.pipatd, pipatd, rtol=1e-6, atol=1e-6)
    summary = result.summary()
    assert summary["patd"]["mean"] == pytest.approx(patd.mean(), abs=1e-6)
    assert summary["pipatd"]["mean"] == pytest.approx(pipatd.mean(), abs=1e-6)
    assert summary["patd"]["median"] == pytest.approx(np.median(patd), abs=1e-6)
    assert summary["pipatd"]["p90"] == pytest.approx(np.percentile(pipatd, 90), abs=1e-6)


def test_torch_engine_on_cpu_equals_numpy_engine():
    """The CUDA path's code (blocked torch k-NN + torch CIEDE2000), run on the CPU."""
    rng = np.random.default_rng(11)
    gt = body_like_gt(rng)
    pv, pc = prediction_near(gt, rng, 3000)
    a = texture_distance(pv, pc, gt, k=8, device="cpu", engine="numpy")
    b = texture_distance(pv, pc, gt, k=8, device="cpu", engine="torch")
    assert (a.engine, b.engine) == ("numpy", "torch")
    np.testing.assert_array_equal(a.nearest, b.nearest)
    np.testing.assert_allclose(b.patd, a.patd, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b.pipatd, a.pipatd, rtol=1e-6, atol=1e-6)
    assert b.summary()["patd"]["mean"] == pytest.approx(a.summary()["patd"]["mean"], abs=1e-9)
    assert b.summary()["pipatd"]["mean"] == pytest.approx(a.summary()["pipatd"]["mean"], abs=1e-9)


def test_pipatd_never_exceeds_patd_and_equals_it_at_k1():
    rng = np.random.default_rng(2024)
    for trial in range(40):
        m, n = int(rng.integers(20, 400)), int(rng.integers(1, 300))
        k = int(rng.integers(1, min(m, 16) + 1))
        gt = ColoredMesh(vertices=rng.normal(size=(m, 3)), faces=np.zeros((0, 3), dtype=np.int64),
                         vertex_colors=rng.random((m, 3)).astype(np.float32))
        pv, pc = rng.normal(size=(n, 3)), rng.random((n, 3))
        r = texture_distance(pv, pc, gt, k=k, device="cpu")
        assert np.all(r.pipatd <= r.patd), f"trial {trial}"
        assert np.all(r.pipatd >= 0)
        one = texture_distance(pv, pc, gt, k=1, device="cpu")
        np.testing.assert_array_equal(one.pipatd, one.patd)
        np.testing.assert_array_equal(one.patd, r.patd)


def test_pipatd_improves_when_more_neighbours_are_allowed():
    rng = np.random.default_rng(5)
    gt = body_like_gt(rng)
    pv, pc = prediction_near(gt, rng, 2000)
    means = [texture_distance(pv, pc, gt, k=k, device="cpu").summary()["pipatd"]["mean"]
             for k in (1, 2, 4, 8, 16)]
    assert all(a > b for a, b in zip(means, means[1:], strict=False))


def textured_gt(rng: np.random.Generator) -> ColoredMesh:
    sphere = trimesh.creation.uv_sphere(count=[24, 24])
    v = np.asarray(sphere.vertices)
    uv = np.column_stack([0.5 + np.arctan2(v[:, 1], v[:, 0]) / (2 * np.pi),
                          0.5 + np.arcsin(np.clip(v[:, 2], -1, 1)) / np.pi]).astype(np.float32)
    yy, xx = np.mgrid[0:64, 0:64]
    image = np.stack([(xx * 4) % 256, (yy * 4) % 256, ((xx // 8 + yy // 8) % 2) * 255], axis=2)
    image = np.clip(image + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)
    return ColoredMesh(vertices=v, faces=np.asarray(sphere.faces, dtype=np.int64), uv=uv,
                       textures=[image], face_material=np.zeros(len(sphere.faces), dtype=np.int32))


def test_textured_gt_uses_surface_samples():
    rng = np.random.default_rng(8)
    gt = textured_gt(rng)
    points, face, bary = sample_surface(gt, 3000, np.random.default_rng(1))
    pv = points + 0.01 * rng.standard_normal(points.shape)
    pc = np.clip(gt.colors_at(face, bary) + 0.08 * rng.standard_normal(points.shape), 0, 1)
    result = texture_distance(pv, pc, gt, k=8, device="cpu", gt_samples=20_000, rng=123)
    assert result.gt_kind == "surface-samples" and result.gt_points == 20_000
    assert result.gt_positions.shape == (20_000, 3)
    # The direct implementation on the same samples (same seed, same sampler).
    gp, gf, gb = sample_surface(gt, 20_000, np.random.default_rng(123))
    np.testing.assert_allclose(result.gt_positions, gp, rtol=0, atol=1e-6)
    patd, pipatd, nearest = direct_patd(pv, pc, gp, gt.colors_at(gf, gb), 8)
    np.testing.assert_array_equal(result.nearest, nearest)
    np.testing.assert_allclose(result.patd, patd, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.pipatd, pipatd, rtol=1e-6, atol=1e-6)
    # Deterministic by default (seed 0), different with another seed.
    again = texture_distance(pv, pc, gt, k=8, device="cpu", gt_samples=20_000)
    np.testing.assert_array_equal(again.patd, texture_distance(pv, pc, gt, k=8, device="cpu",
                                                               gt_samples=20_000, rng=0).patd)
    assert not np.array_equal(again.patd, result.patd)


def test_gt_samples_forces_surface_samples_on_vertex_coloured_gt():
    rng = np.random.default_rng(9)
    gt = body_like_gt(rng, subdivisions=3)
    pv, pc = prediction_near(gt, rng, 500)
    result = texture_distance(pv, pc, gt, gt_samples=5000, device="cpu")
    assert result.gt_kind == "surface-samples" and result.gt_points == 5000
    assert result.summary()["gt_kind"] == "surface-samples"


def test_clipping_is_counted_and_applied():
    rng = np.random.default_rng(10)
    gt = body_like_gt(rng, subdivisions=3)
    pv, pc = prediction_near(gt, rng, 800)
    pc_out = pc.copy()
    pc_out[:10, 0] = 1.2
    pc_out[10:15, 2] = -0.1
    result = texture_distance(pv, pc_out, gt, device="cpu")
    assert result.clipped_pred == 15 and result.clipped_gt == 0
    assert result.summary()["clipped"] == {"pred": 15, "gt": 0}
    patd, pipatd, _ = direct_patd(pv, np.clip(pc_out, 0, 1), gt.vertices, gt.vertex_colors, 8)
    np.testing.assert_allclose(result.patd, patd, rtol=1e-6, atol=1e-6)


def test_uint8_colours_are_read_as_0_255():
    rng = np.random.default_rng(12)
    gt = body_like_gt(rng, subdivisions=3)
    pv, pc = prediction_near(gt, rng, 500)
    as_uint8 = np.rint(pc * 255).astype(np.uint8)
    a = texture_distance(pv, as_uint8, gt, device="cpu")
    b = texture_distance(pv, as_uint8 / 255.0, gt, device="cpu")
    np.testing.assert_array_equal(a.patd, b.patd)


def test_summary_layout():
    rng = np.random.default_rng(13)
    gt = body_like_gt(rng, subdivisions=3)
    pv, pc = prediction_near(gt, rng, 300)
    result = texture_distance(pv, pc, gt, device="cpu")
    assert isinstance(result, TextureDistance)
    s = result.summary()
    assert set(s) >= {"patd", "pipatd", "k", "gt_points", "gt_kind", "vertices", "clipped"}
    assert set(s["patd"]) == {"mean", "median", "p90"} and set(s["pipatd"]) == {"mean", "median", "p90"}
    assert s["k"] == 8 and s["vertices"] == 300 and s["gt_points"] == len(gt.vertices)
    assert s["patd"]["mean"] >= s["pipatd"]["mean"] > 0


def test_progress_and_cancellation():
    rng = np.random.default_rng(14)
    gt = body_like_gt(rng, subdivisions=3)
    pv, pc = prediction_near(gt, rng, 300)
    stages = []
    texture_distance(pv, pc, gt, device="cpu", progress=Progress(lambda s, f, i: stages.append((s, f))))
    assert stages[0][1] == 0.0 and stages[-1] == ("done", 1.0)
    assert [f for _, f in stages] == sorted(f for _, f in stages)
    with pytest.raises(CancelledError):
        texture_distance(pv, pc, gt, device="cpu", progress=Progress(should_stop=lambda: True))


@pytest.fixture(scope="module")
def small_case():
    rng = np.random.default_rng(15)
    gt = body_like_gt(rng, subdivisions=2)
    pv, pc = prediction_near(gt, rng, 50)
    return gt, pv, pc


@pytest.mark.parametrize(("change", "message"), [
    (lambda pv, pc: (pv[:, :2], pc), r"\(N, 3\)"),
    (lambda pv, pc: (np.where(np.arange(len(pv))[:, None] == 3, np.nan, pv), pc), "NaN"),
    (lambda pv, pc: (pv, np.where(np.arange(len(pc))[:, None] == 0, np.nan, pc)), "NaN"),
    (lambda pv, pc: (pv, pc * 255.0), "0..255"),
    (lambda pv, pc: (pv, pc * 2.0 - 1.0), r"\[-1, 1\]"),
    (lambda pv, pc: (pv, pc[:-1]), "colours for"),
    (lambda pv, pc: (pv[:0], pc[:0]), "empty"),
])
def test_bad_inputs_are_named(small_case, change, message):
    gt, pv, pc = small_case
    bad_v, bad_c = change(pv, pc)
    with pytest.raises(InputError, match=message):
        texture_distance(bad_v, bad_c, gt, device="cpu")


def test_bad_k_engine_device_and_gt(small_case):
    gt, pv, pc = small_case
    with pytest.raises(InputError, match="positive integer"):
        texture_distance(pv, pc, gt, k=0, device="cpu")
    with pytest.raises(InputError, match="exceeds"):
        texture_distance(pv, pc, gt, k=len(gt.vertices) + 1, device="cpu")
    with pytest.raises(InputError, match="engine"):
        texture_distance(pv, pc, gt, device="cpu", engine="fast")
    with pytest.raises(InputError, match="gt_samples"):
        texture_distance(pv, pc, gt, device="cpu", gt_samples=0)
    plain = ColoredMesh(vertices=gt.vertices, faces=gt.faces)
    with pytest.raises(InputError, match="neither vertex colours nor a texture"):
        texture_distance(pv, pc, plain, device="cpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            texture_distance(pv, pc, gt, device="cuda")


def test_numpy_engine_without_device_runs_on_the_cpu(small_case):
    gt, pv, pc = small_case
    result = texture_distance(pv, pc, gt, engine="numpy")
    assert (result.engine, result.device) == ("numpy", "cpu")
