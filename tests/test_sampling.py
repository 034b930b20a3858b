"""Training samplers and the robust inside test, on real meshes built here (sphere, plane, open sphere)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.data import inside as inside_mod
from backend.data import sampling
from backend.errors import InputError
from backend.meshio import ColoredMesh
from tests.helpers.meshes import grid


def _sphere(subdivisions: int = 4, radius: float = 0.5) -> ColoredMesh:
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    v = np.asarray(m.vertices)
    colors = (0.5 + 0.5 * v / radius).astype(np.float32)  # colour = a linear function of position
    return ColoredMesh(vertices=v, faces=np.asarray(m.faces, dtype=np.int64), vertex_colors=colors)


def _plane(n: int = 40, size: float = 1.0) -> ColoredMesh:
    """A flat n x n grid in z = 0, normals +z, colour linear in x and y."""
    verts, tris = grid(n, size)
    v = verts.astype(np.float64)
    colors = np.stack([0.5 + v[:, 0] / size, 0.5 + v[:, 1] / size, np.full(n * n, 0.25)], 1)
    return ColoredMesh(vertices=v, faces=tris.astype(np.int64), vertex_colors=colors.astype(np.float32))


# -- inside / outside ----------------------------------------------------------------------------------

def test_fast_winding_numbers_match_exact_sum():
    mesh = _sphere(3)
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform(-0.8, 0.8, (600, 3)),
                          mesh.vertices[rng.integers(0, len(mesh.vertices), 300)] * 1.01])
    fast = inside_mod.winding_numbers(mesh.vertices, mesh.faces, pts)
    exact = inside_mod.winding_numbers_exact(mesh.vertices, mesh.faces, pts)
    assert np.abs(fast - exact).max() < 0.03
    assert ((fast > 0.5) == (exact > 0.5)).all()
    r = np.linalg.norm(pts, axis=1)
    clear = np.abs(r - 0.5) > 0.01
    np.testing.assert_allclose(exact[clear], (r[clear] < 0.5).astype(float), atol=1e-6)


def test_inside_labels_survive_holes_where_ray_parity_fails():
    """An open sphere (a cap and random faces removed): winding numbers still label correctly."""
    mesh = _sphere(4)
    centroids = mesh.vertices[mesh.faces].mean(axis=1)
    rng = np.random.default_rng(1)
    keep = (centroids[:, 1] < 0.42) & (rng.random(len(mesh.faces)) > 0.03)  # top cap + 3% holes
    faces = mesh.faces[keep]
    pts = rng.uniform(-0.7, 0.7, (4000, 3))
    r = np.linalg.norm(pts, axis=1)
    # Points within 0.05 of the sphere are ambiguous next to the holes; score the rest.
    clear = np.abs(r - 0.5) > 0.05
    labels = inside_mod.inside(mesh.vertices, faces, pts)
    truth = r < 0.5
    assert (labels[clear] == truth[clear]).mean() > 0.995
    # Ray parity on the same open mesh gets a sizeable share wrong (what the robust test is for).
    tm = trimesh.Trimesh(mesh.vertices, faces, process=False)
    parity = tm.contains(pts[clear][:1000]) if _has_rtree() else None
    if parity is not None:
        assert (parity == truth[clear][:1000]).mean() < (labels[clear][:1000] == truth[clear][:1000]).mean()


def _has_rtree() -> bool:
    try:
        import rtree  # noqa: F401
    except ImportError:
        return False
    return True


# -- geometry points -----------------------------------------------------------------------------------

def test_geometry_pool_and_points_follow_pifu_mix_and_balance():
    mesh = _sphere(3)
    rng = np.random.default_rng(2)
    pool = sampling.geometry_pool(mesh, n_surface=8000, n_uniform=800, sigma=0.05, rng=rng)
    r_s = np.linalg.norm(pool.surface_points, axis=1)
    # Gaussian offsets of sigma 0.05 around radius 0.5.
    assert abs(np.std(r_s - 0.5) - 0.05) < 0.01
    assert pool.uniform_points.min() >= -1 and pool.uniform_points.max() <= 1
    # Labels right away from the surface (icosphere chords make |r-0.5| < 0.01 ambiguous).
    for pts, lab in ((pool.surface_points, pool.surface_inside), (pool.uniform_points, pool.uniform_inside)):
        r = np.linalg.norm(pts, axis=1)
        clear = np.abs(r - 0.5) > 0.01
        assert (lab[clear] == (r[clear] < 0.5)).all()
    pts, labels = sampling.geometry_points(pool, 1000, np.random.default_rng(3))
    assert pts.shape == (1000, 3) and labels.shape == (1000,)
    assert pts.dtype == np.float32 and set(np.unique(labels)) <= {0.0, 1.0}
    # Balanced as PIFu: more than half the candidates of a sphere's surface band are inside -> 50/50.
    assert labels.sum() == 500
    # About 1/17 of the candidates are uniform; after balancing, most outside uniform points survive.
    far = np.abs(np.linalg.norm(pts, axis=1) - 0.5) > 0.25
    assert 0.01 < far.mean() < 0.15
    again = sampling.geometry_points(pool, 1000, np.random.default_rng(3))
    np.testing.assert_array_equal(pts, again[0])


def test_geometry_points_pifu_branch_when_few_inside():
    pool = sampling.GeometryPool(
        surface_points=np.zeros((400, 3), np.float32), surface_inside=np.arange(400) < 40,
        uniform_points=np.ones((50, 3), np.float32), uniform_inside=np.zeros(50, bool))
    pts, labels = sampling.geometry_points(pool, 100, np.random.default_rng(0))
    # n_in <= n/2: keep every inside point (those drawn), fill with outside ones.
    assert len(labels) == 100
    assert 0 < labels.sum() <= 50


# -- colour points -------------------------------------------------------------------------------------

def test_color_points_are_on_the_surface_with_interpolated_colours():
    mesh = _sphere(4)
    rng = np.random.default_rng(4)
    dense = sampling.dense_surface_samples(mesh, 20000, rng)
    # Colours are the barycentric blend of vertex colours: linear in position on each face.
    tri_pos = np.einsum("mk,mkj->mj", dense.barycentric.astype(np.float64),
                        mesh.vertices[mesh.faces[dense.face]])
    np.testing.assert_allclose(dense.points, tri_pos, atol=1e-6)
    np.testing.assert_allclose(dense.colors, 0.5 + tri_pos / 1.0, atol=1e-5)
    # Normals point outward on a sphere.
    assert (np.einsum("ij,ij->i", dense.normals, dense.points) > 0).all()
    np.testing.assert_allclose(np.linalg.norm(dense.normals, axis=1), 1.0, atol=1e-5)
    pts, cols = sampling.color_points(dense, 5000, rng, sigma=0.01)
    assert pts.shape == (5000, 3) and cols.shape == (5000, 3)
    offsets = np.linalg.norm(pts, axis=1) - 0.5
    assert abs(np.std(offsets) - 0.01) < 0.002
    exact, _ = sampling.color_points(dense, 100, np.random.default_rng(9), sigma=0.0)
    assert np.abs(np.linalg.norm(exact, axis=1) - 0.5).max() < 0.01


def test_dense_samples_need_colours():
    mesh = _sphere(2)
    mesh.vertex_colors = None
    with pytest.raises(InputError, match="colour"):
        sampling.dense_surface_samples(mesh, 10, np.random.default_rng(0))


# -- patches -------------------------------------------------------------------------------------------

def test_grid_patches_on_a_plane_are_exact_grids_with_exact_colours():
    mesh = _plane()
    rng = np.random.default_rng(5)
    dense = sampling.dense_surface_samples(mesh, 50000, rng)
    k, h = 5, 0.02
    pat = sampling.patches(mesh, dense, m=40, k=k, spacing=h, rng=rng, sigma=0.003)
    assert pat.points.shape == (40, k * k, 3) and pat.colors.shape == (40, k * k, 3)
    np.testing.assert_allclose(pat.weights.sum(axis=1), 1.0, atol=1e-6)
    inner = np.all(np.abs(pat.centers[:, :2]) < 0.5 - 3 * h, axis=1)  # away from the plane's border
    g = pat.points[inner].reshape(-1, k, k, 3)
    # One normal offset per patch: every point of a patch has the same z, and z varies across patches.
    z = g[..., 2]
    assert np.abs(z - z[:, :1, :1]).max() < 1e-6
    assert np.std(z[:, 0, 0]) > 0.001
    # A regular k x k grid: neighbours h apart along both grid axes.
    np.testing.assert_allclose(np.linalg.norm(np.diff(g, axis=1), axis=-1), h, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(np.diff(g, axis=2), axis=-1), h, atol=1e-5)
    # Centred on the centre; colours interpolated exactly (linear in position).
    np.testing.assert_allclose(g[:, k // 2, k // 2, :2], pat.centers[inner][:, :2], atol=1e-5)
    cols = pat.colors[inner].reshape(-1, k, k, 3)
    np.testing.assert_allclose(cols[..., 0], 0.5 + g[..., 0], atol=1e-5)
    np.testing.assert_allclose(cols[..., 1], 0.5 + g[..., 1], atol=1e-5)


def test_grid_patches_on_a_sphere_lie_on_the_surface():
    mesh = _sphere(4)
    rng = np.random.default_rng(6)
    dense = sampling.dense_surface_samples(mesh, 50000, rng)
    pat = sampling.patches(mesh, dense, m=30, k=4, spacing=0.01, rng=rng, sigma=0.0,
                           weighting="gaussian")
    r = np.linalg.norm(pat.points, axis=-1)
    assert np.abs(r - 0.5).max() < 0.003  # on the faces (chords lie inside the sphere by < 0.003)
    d = np.linalg.norm(pat.points - pat.centers[:, None], axis=-1)
    assert d.max() < 0.03
    # Gaussian weights favour the centre.
    centre_w = pat.weights[np.arange(30), np.argmin(d, axis=1)]
    assert (centre_w > pat.weights.mean(axis=1)).all()


def test_nearest_patches_are_the_nearest_dense_samples():
    mesh = _sphere(3)
    rng = np.random.default_rng(7)
    dense = sampling.dense_surface_samples(mesh, 20000, rng)
    pat = sampling.patches(mesh, dense, m=10, k=3, spacing=0.01, rng=rng, sigma=0.0, mode="nearest")
    d_all = np.linalg.norm(dense.points[None] - pat.centers[:, None], axis=-1)
    kth = np.sort(d_all, axis=1)[:, 8]
    d_pat = np.linalg.norm(pat.points - pat.centers[:, None], axis=-1)
    assert (d_pat <= kth[:, None] + 1e-6).all()
    assert (np.diff(d_pat, axis=1) >= -1e-6).all()  # ordered by distance: index p = rank


def test_patches_reject_bad_arguments():
    mesh = _sphere(2)
    dense = sampling.dense_surface_samples(mesh, 1000, np.random.default_rng(0))
    with pytest.raises(InputError, match="mode"):
        sampling.patches(mesh, dense, 4, 3, 0.01, np.random.default_rng(0), mode="cube")
    with pytest.raises(InputError, match="k >= 2"):
        sampling.patches(mesh, dense, 4, 1, 0.01, np.random.default_rng(0))


def test_pifu_sigmas_in_canonical_units():
    # 5 cm / 1 mm on a subject 180 units tall, expressed at CANONICAL_HEIGHT = 1.7578125.
    assert abs(sampling.PIFU_GEOMETRY_SIGMA - 5 / 102.4) < 1e-12
    assert abs(sampling.PIFU_COLOR_SIGMA - 0.1 / 102.4) < 1e-12
