"""avatex_core.mesh_hygiene on the fixture avatar and on small hand-made meshes, and the backend's mesh
loading taking its decisions (backend.meshio.load_mesh)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from avatex_core import mesh_hygiene as mh
from backend.errors import InputError
from backend.meshio import load_mesh
from backend.triangles import signed_volume, vertex_normals
from tests.helpers import real_assets


@pytest.fixture(scope="module")
def avatar():
    a = real_assets.read_fixture()
    return a["v"], a["f"]


def test_clean_avatar_needs_nothing(avatar):
    v, f = avatar
    h = mh.inspect(v, f)
    assert h.counts == {} and h.actions() == [] and h.error is None
    assert h.keep_faces.all() and not h.flip_faces.any() and h.keep_vertices.all()


def test_duplicates_of_either_winding_keep_the_first(avatar):
    v, f = avatar
    n = len(f)
    # The back copies live on their own vertices (as exporters write them): welding must see through it.
    h = mh.inspect(np.concatenate([v, v]), np.concatenate([f, f[:, ::-1] + len(v)]))
    assert h.counts == {"double_sided_faces": n, "unreferenced_vertices": len(v)}
    assert h.keep_faces[:n].all() and not h.keep_faces[n:].any()
    same = mh.inspect(v, np.concatenate([f, np.roll(f[:100], 1, axis=1)]))
    assert same.counts == {"duplicate_faces": 100}
    faces, kept, remap = h.apply(np.concatenate([f, f[:, ::-1] + len(v)]))
    np.testing.assert_array_equal(faces, f)
    np.testing.assert_array_equal(kept, np.arange(n))
    assert (remap[len(v):] == -1).all()


def test_flipped_patches_are_turned_back(avatar):
    v, f = avatar
    patch = (v[f].mean(axis=1)[:, 0] > 0.05) & (v[f].mean(axis=1)[:, 2] > 0.2)
    assert 100 < patch.sum() < len(f) // 3
    g = f.copy()
    g[patch] = g[patch][:, ::-1]
    h = mh.inspect(v, g)
    assert h.counts == {"flipped_faces": int(patch.sum())}
    np.testing.assert_array_equal(h.flip_faces, patch)
    fixed, _, _ = h.apply(g)
    assert trimesh.Trimesh(v, fixed, process=False).is_winding_consistent
    assert signed_volume(v, fixed) == pytest.approx(signed_volume(v, f))


def test_inside_out_mesh_is_turned_outward_but_a_flat_sheet_keeps_its_side(avatar):
    v, f = avatar
    inverted = mh.inspect(v, f[:, ::-1])
    assert inverted.counts == {"flipped_faces": len(f)}
    grid = trimesh.creation.box().vertices[:, :2]  # a flat square sheet, either way up
    sheet_v = np.c_[np.unique(grid, axis=0), np.zeros(4)]
    sheet_f = np.array([[0, 1, 3], [0, 3, 2]])
    for faces in (sheet_f, sheet_f[:, ::-1]):
        assert mh.inspect(sheet_v, faces).counts == {}
    mixed = np.array([[0, 1, 3], [0, 2, 3]])  # the second face against the first
    h = mh.inspect(sheet_v, mixed)
    assert h.counts == {"flipped_faces": 1} and h.flip_faces.tolist() == [False, True]


def test_degenerate_nan_out_of_range_and_stray_vertices():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [2, 2, 2], [np.nan, 0, 0], [0.5, 0, 0]],
                 dtype=float)
    f = np.array([[0, 1, 2],  # fine
                  [1, 3, 2],  # fine
                  [0, 1, 6],  # collinear: no area
                  [0, 0, 2],  # repeated corner
                  [0, 5, 1],  # uses the NaN vertex
                  [0, 1, 9],  # index past the end
                  [0, -1, 1]])  # negative index
    h = mh.inspect(v, f)
    assert h.counts == {"degenerate_faces": 2, "non_finite_faces": 1, "non_finite_vertices": 1,
                        "out_of_range_faces": 2, "unreferenced_vertices": 2}
    assert h.keep_faces.tolist() == [True, True, False, False, False, False, False]
    assert h.keep_vertices.tolist() == [True, True, True, True, False, False, False]
    assert "removed 2 zero-area face(s)" in h.actions()
    everything_nan = mh.inspect(np.full((4, 3), np.nan), np.array([[0, 1, 2], [0, 2, 3]]))
    assert everything_nan.error == "every vertex coordinate is NaN or inf"
    assert mh.inspect(np.zeros((0, 3)), np.zeros((0, 3), int)).error == "it has no faces"


def test_corner_normals_against_their_face(avatar):
    v, f = avatar
    n = vertex_normals(v, f)[f]  # (F, 3, 3) smooth normals
    smooth = mh.inspect(v, f, corner_normals=n).bad_corner_normals
    assert smooth.sum() < 1e-3 * smooth.size  # only a few on thin slivers (fingertips) point against
    n[1::2] *= -1.0
    h = mh.inspect(v, f, corner_normals=n)
    expected = smooth.copy()
    expected[1::2] = ~smooth[1::2]
    np.testing.assert_array_equal(h.bad_corner_normals, expected)
    assert h.counts == {"bad_normals": int(expected.sum())} and expected.sum() > 0.49 * expected.size


def test_polygons_padded_with_sizes():
    # Two quads and a triangle; the second quad is the first one reversed (a double-sided quad).
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], dtype=float)
    f = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 4, 2, -7]])
    h = mh.inspect(v, f, face_sizes=np.array([4, 4, 3]))
    assert h.counts == {"double_sided_faces": 1}
    assert h.keep_faces.tolist() == [True, False, True]


@pytest.mark.slow
def test_load_mesh_repairs_with_the_shared_decisions(tmp_path):
    clean = load_mesh(real_assets.make("clean", tmp_path / "a"))
    assert clean.repairs == []
    for kind in ("doubled", "game"):
        m = load_mesh(real_assets.make(kind, tmp_path / kind))
        assert len(m.faces) == len(clean.faces)
        assert any("double-sided" in r for r in m.repairs), m.repairs
    doubled = load_mesh(tmp_path / "doubled" / "doubled.obj")
    centres = np.full((len(clean.faces), 3), 1.0 / 3.0)
    every = np.arange(len(clean.faces))
    np.testing.assert_allclose(doubled.vertices[doubled.faces], clean.vertices[clean.faces])
    np.testing.assert_allclose(doubled.colors_at(every, centres), clean.colors_at(every, centres))
    flipped = load_mesh(real_assets.make("flipped", tmp_path / "f"))
    assert flipped.repairs and flipped.repairs[0].startswith("flipped ")
    assert trimesh.Trimesh(flipped.vertices, flipped.faces, process=False).is_winding_consistent


def test_load_mesh_can_keep_the_vertex_order(tmp_path):
    """Per-vertex files (avatex evaluate --out) must line up with the file: only faces change then."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0.5, 0, 0], [5, 5, 5]], dtype=float)
    f = np.array([[0, 1, 2], [1, 3, 2], [0, 4, 1], [2, 1, 0]])  # a needle and a back copy
    trimesh.Trimesh(v, f, process=False).export(tmp_path / "m.ply")
    kept = load_mesh(tmp_path / "m.ply", keep_vertex_order=True)
    np.testing.assert_array_equal(kept.vertices, v)
    np.testing.assert_array_equal(kept.faces, f[:2])
    assert kept.repairs == ["removed 1 zero-area face(s)", "removed 1 back copy(ies) of double-sided faces",
                            "kept 2 unreferenced vertex(es) (vertex order kept)"]
    compact = load_mesh(tmp_path / "m.ply")
    assert len(compact.vertices) == 4 and compact.repairs[-1] == "removed 2 unreferenced vertex(es)"


def test_load_mesh_names_an_unrepairable_file(tmp_path):
    path = real_assets.nan_obj(tmp_path)
    with pytest.raises(InputError) as info:
        load_mesh(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "NaN" in message
