"""Occupancy grids and marching cubes: coarse-to-fine vs dense, the official schedule, the mesh."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from backend.errors import CancelledError, InputError
from backend.recon.analytic import body_occupancy
from backend.recon.grid import (
    GridSpec,
    evaluate_coarse_to_fine,
    evaluate_dense,
    evaluate_octree_official,
)
from backend.recon.mesh import NoSurfaceError, extract_surface, signed_volume

R = 128  # voxel = 2/128 = 0.0156; the body's fingers and cane are 1-1.5 voxels thick here


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric mean nearest-neighbour distance between two vertex sets."""
    return 0.5 * (cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


@pytest.fixture(scope="module", params=[200.0, 400.0], ids=["k200", "k400"])
def body(request):
    """The analytic body as a trained-like field (sigmoid(-k sdf), noise, thin parts) and its dense grid."""
    k = request.param
    fn = lambda p: body_occupancy(p, sharpness=k)  # noqa: E731
    spec = GridSpec(R)
    return fn, spec, evaluate_dense(fn, spec, batch_size=1 << 18)


def test_coarse_to_fine_agrees_with_dense_at_a_fraction_of_the_points(body):
    fn, spec, dense = body
    fine = evaluate_coarse_to_fine(fn, spec, batch_size=1 << 16)
    assert fine.volume.shape == dense.volume.shape == (R + 1,) * 3
    agree = np.mean((fine.volume >= 0.5) == (dense.volume >= 0.5))
    assert agree >= 0.999
    v_fine, _ = extract_surface(fine.volume, spec)
    v_dense, _ = extract_surface(dense.volume, spec)
    voxel = 2.0 / R
    assert chamfer(v_fine, v_dense) <= 0.5 * voxel
    assert fine.points_evaluated == int(fine.evaluated.sum()) == sum(lv["points"] for lv in fine.levels)
    assert fine.points_evaluated < 0.25 * dense.points_evaluated
    # evaluated values are the field's own values, not interpolations
    idx = np.argwhere(fine.evaluated)[::997]
    assert np.allclose(fine.volume[tuple(idx.T)], fn(spec.to_coords(idx).astype(np.float32)))


def test_official_schedule_matches_dense_and_costs_more(body):
    fn, spec, dense = body
    official = evaluate_octree_official(fn, spec)
    assert official.volume.shape == (R,) * 3  # the official grid stops one cell short of b_max
    assert np.mean((official.volume >= 0.5) == (dense.volume[:R, :R, :R] >= 0.5)) >= 0.999
    fine = evaluate_coarse_to_fine(fn, spec, batch_size=1 << 16)
    assert fine.points_evaluated < official.points_evaluated
    # every index-(R-1) point goes to the network in the official schedule (its "top slab")
    assert official.evaluated[R - 1].all() and official.evaluated[:, R - 1].all()


def literal_official_octree(fn, spec: GridSpec, init_resolution: int, threshold: float):
    """Line-by-line port of the official eval_grid_octree (reference/pifu.md §5), Python loops and all."""
    r = spec.resolution
    idx = np.stack(np.meshgrid(*[np.arange(r)] * 3, indexing="ij"), -1)
    sdf = np.zeros((r, r, r), np.float32)
    dirty = np.ones((r, r, r), bool)
    grid_mask = np.zeros((r, r, r), bool)
    reso = r // init_resolution
    count = 0
    while reso > 0:
        grid_mask[0:r:reso, 0:r:reso, 0:r:reso] = True
        test = grid_mask & dirty
        sdf[test] = fn(spec.to_coords(idx[test]).astype(np.float32))
        count += int(test.sum())
        dirty[test] = False
        if reso <= 1:
            break
        for x in range(0, r - reso, reso):
            for y in range(0, r - reso, reso):
                for z in range(0, r - reso, reso):
                    if not dirty[x + reso // 2, y + reso // 2, z + reso // 2]:
                        continue
                    corners = [(a, b, c) for a in (0, reso) for b in (0, reso) for c in (0, reso)]
                    v = np.array([sdf[x + a, y + b, z + c] for a, b, c in corners])
                    if v.max() - v.min() < threshold:
                        sdf[x:x + reso, y:y + reso, z:z + reso] = (v.max() + v.min()) / 2
                        dirty[x:x + reso, y:y + reso, z:z + reso] = False
        reso //= 2
    return sdf, count


def test_vectorised_official_schedule_is_the_official_loop():
    spec = GridSpec(32, (-0.5, -0.9, -0.5), (0.5, 0.9, 0.5))
    fn = lambda p: body_occupancy(p, sharpness=60.0)  # noqa: E731
    ref, count = literal_official_octree(fn, spec, init_resolution=8, threshold=0.01)
    ours = evaluate_octree_official(fn, spec, init_resolution=8, threshold=0.01, batch_size=1000)
    assert ours.points_evaluated == count
    assert np.array_equal(ours.volume, ref)


def test_lattice_convention():
    spec = GridSpec(256)
    c = spec.to_coords(np.array([[0, 0, 0], [255, 128, 1], [256, 256, 256]]))
    assert np.allclose(c[0], -1.0) and np.allclose(c[2], 1.0)
    assert np.allclose(c[1], [1 - 2 / 256, 0.0, -1 + 2 / 256])  # b_min + i (b_max - b_min) / R


def sphere(center, radius, k=100.0):
    center = np.asarray(center, np.float32)
    def fn(p):
        d = np.clip(k * (np.linalg.norm(p - center, axis=1) - radius), -60, 60)
        return (1 / (1 + np.exp(d))).astype(np.float32)

    return fn


def test_marching_cubes_places_the_surface_and_winds_it_outward():
    spec = GridSpec(64)
    center, radius = np.array([0.1, 0.2, 0.3]), 0.5
    grid = evaluate_coarse_to_fine(sphere(center, radius), spec)
    vertices, faces = extract_surface(grid.volume, spec)
    assert vertices.dtype == np.float32 and faces.dtype == np.int32
    dist = np.linalg.norm(vertices - center, axis=1)
    assert np.abs(dist - radius).max() < 0.5 * 2 / 64
    assert signed_volume(vertices, faces) == pytest.approx(4 / 3 * np.pi * radius ** 3, rel=0.02)
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.all(np.einsum("ij,ij->i", normals, tri.mean(1) - center) > 0)  # every face points out


def test_no_surface_is_a_clear_error():
    spec = GridSpec(16)
    with pytest.raises(NoSurfaceError, match="never crosses 0.5") as err:
        extract_surface(np.zeros((17, 17, 17), np.float32), spec)
    assert isinstance(err.value, InputError)


def test_progress_and_cancellation():
    spec = GridSpec(32)
    seen = []
    evaluate_coarse_to_fine(sphere((0, 0, 0), 0.4), spec, batch_size=500,
                            progress=lambda stage, f, info: seen.append((stage, f, info["points"])))
    fractions = [f for _, f, _ in seen]
    assert {s for s, _, _ in seen} == {"occupancy"}
    assert fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] <= 1
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(CancelledError):
        evaluate_coarse_to_fine(sphere((0, 0, 0), 0.4), spec, batch_size=500, should_stop=stop)
    with pytest.raises(CancelledError):
        evaluate_octree_official(sphere((0, 0, 0), 0.4), spec, batch_size=500, should_stop=lambda: True)
