"""blender_addon.mesh_import with the bpy wheel: fast builds, staged builds, attributes, read-back."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import mesh_import as mi  # noqa: E402
from tests.helpers.meshes import torus  # noqa: E402

pytestmark = pytest.mark.blender


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield


def edge_set(mesh) -> set[tuple[int, int]]:
    e = np.empty(len(mesh.edges) * 2, np.int32)
    mesh.edges.foreach_get("vertices", e)
    return {tuple(sorted(p)) for p in e.reshape(-1, 2).tolist()}


def test_build_mesh_round_trips_geometry():
    verts, tris = torus()
    mesh = mi.build_mesh("t", verts, tris)
    np.testing.assert_array_equal(mi.read_positions(mesh), verts)
    np.testing.assert_array_equal(mi.read_triangles(mesh), tris)
    # A closed torus: E = 3F/2, and Euler characteristic V - E + F = 0.
    assert len(mesh.edges) == 3 * len(tris) // 2
    assert len(verts) - len(mesh.edges) + len(tris) == 0
    assert mesh.validate(verbose=False) is False   # nothing to correct


@pytest.mark.parametrize("corners_per_chunk", [7, 100, 10_000])
def test_staged_import_builds_the_same_mesh_in_bounded_steps(corners_per_chunk):
    verts, tris = torus()
    rng = np.random.default_rng(1)
    colors = rng.random((len(verts), 3), dtype=np.float32)
    floats = {name: rng.random(len(verts), dtype=np.float32) for name in ("patd", "pipatd")}
    reference = mi.import_mesh("one", verts, tris, colors, floats=floats)
    job = mi.StagedImport("staged", verts, tris, colors, floats=floats, corners_per_chunk=corners_per_chunk)
    stages = list(job.steps())
    expected_chunks = -(-3 * len(tris) // corners_per_chunk)
    assert stages.count("edges") == expected_chunks + 1
    assert job.stage == "done" and job.fraction == 1.0
    mesh = job.obj.data
    assert edge_set(mesh) == edge_set(reference.data)
    assert mesh.validate(verbose=False) is False
    np.testing.assert_array_equal(mi.read_triangles(mesh), tris)
    np.testing.assert_allclose(mi.read_point_colors(mesh), colors, atol=1e-6)
    for name, values in floats.items():
        np.testing.assert_array_equal(mi.read_point_floats(mesh, name), values)
    assert mesh.color_attributes.active_color_name == mi.COLOR_ATTRIBUTE
    assert mesh.color_attributes.default_color_name == mi.COLOR_ATTRIBUTE


def test_staged_import_adds_nothing_until_allocation_and_discard_removes_everything():
    verts, tris = torus()
    job = mi.StagedImport("gone", verts, tris, corners_per_chunk=50)
    job.step()
    job.step()
    assert "gone" not in bpy.data.meshes
    while job.stage != "geometry":
        job.step()
    assert "gone" in bpy.data.meshes
    job.discard()
    assert "gone" not in bpy.data.meshes and "gone" not in bpy.data.objects
    assert job.step() is False


def test_finish_callback_receives_the_object():
    verts, tris = torus()
    seen = []
    obj = mi.StagedImport("cb", verts, tris, finish=seen.append).run_to_end()
    assert seen == [obj] and obj.name in bpy.context.scene.collection.objects


def test_edge_chunks_concatenate_to_the_global_unique_edges():
    verts, tris = torus(9, 7)
    lo, hi = mi.edge_keys(tris, len(verts))
    keys = lo.astype(np.int64) * len(verts) + hi
    parts = [mi.edge_chunk(lo, hi, len(verts), a, b)[1] for a, b in ((0, 10), (10, 11), (11, len(verts)))]
    np.testing.assert_array_equal(np.concatenate(parts), np.unique(keys))


def test_colours_are_stored_linear_and_read_back_as_srgb():
    verts, tris = torus()
    srgb = np.tile(np.array([[0.5, 0.25, 1.0]], np.float32), (len(verts), 1))
    obj = mi.import_mesh("c", verts, tris, srgb)
    attr = obj.data.color_attributes[mi.COLOR_ATTRIBUTE]
    assert attr.data_type == "FLOAT_COLOR" and attr.domain == "POINT"
    np.testing.assert_allclose(attr.data[0].color[:3], [0.21404114, 0.05087609, 1.0], rtol=1e-5)
    np.testing.assert_allclose(attr.data[0].color_srgb[:3], [0.5, 0.25, 1.0], atol=2e-4)  # Blender's view
    np.testing.assert_allclose(mi.read_point_colors(obj.data), srgb, atol=1e-6)


def test_corner_byte_colours_are_averaged_per_vertex():
    verts, tris = torus()
    mesh = mi.build_mesh("b", verts, tris)
    attr = mesh.color_attributes.new("paint", "BYTE_COLOR", "CORNER")
    corner = np.zeros((len(mesh.loops), 4), np.float32)
    corner[:, 3] = 1
    corner[::2, 0] = 1.0   # every other corner red: vertices average to 0.5 (torus: 6 corners each)
    attr.data.foreach_set("color_srgb", corner.ravel())
    got = mi.read_point_colors(mesh, "paint")
    np.testing.assert_allclose(got[:, 0], 0.5, atol=0.01)
    np.testing.assert_allclose(got[:, 1:], 0.0, atol=1e-6)


def test_replacing_attributes_keeps_one_of_each():
    verts, tris = torus()
    mesh = mi.build_mesh("r", verts, tris)
    mi.set_point_floats(mesh, "patd", np.zeros(len(verts), np.float32))
    mi.set_point_floats(mesh, "patd", np.ones(len(verts), np.float32))
    assert [a.name for a in mesh.attributes].count("patd") == 1
    np.testing.assert_array_equal(mi.read_point_floats(mesh, "patd"), 1.0)
    assert mi.read_point_floats(mesh, "missing") is None


def test_float64_and_int64_inputs_are_converted():
    verts, tris = torus()
    obj = mi.import_mesh("dt", verts.astype(np.float64), tris.astype(np.int64))
    np.testing.assert_array_equal(mi.read_triangles(obj.data), tris)


@pytest.mark.parametrize(("verts", "tris", "message"), [
    (np.zeros((4, 2)), np.zeros((1, 3)), "vertices must have shape"),
    (np.full((4, 3), np.nan), np.zeros((1, 3)), "NaN"),
    (np.zeros((4, 3)), np.zeros((1, 4)), "faces must have shape"),
    (np.zeros((4, 3)), np.array([[0, 1, 4]]), "face indices must lie in"),
])
def test_bad_geometry_is_refused_with_a_clear_message(verts, tris, message):
    with pytest.raises(ValueError, match=message):
        mi.build_mesh("bad", verts, tris)
    assert "bad" not in bpy.data.meshes


def test_attribute_length_must_match():
    verts, tris = torus()
    with pytest.raises(ValueError, match=r"attribute 'patd' must have shape"):
        mi.StagedImport("x", verts, tris, floats={"patd": np.zeros(3, np.float32)})


def test_texture_colours_are_sampled_at_the_uvs():
    verts, tris = torus()
    obj = mi.import_mesh("tex", verts, tris)
    mesh = obj.data
    uv = mesh.uv_layers.new(name="UVMap")
    # All corners of vertex v sample the texel column v % 4 of a 4x1 image with known sRGB colours.
    cv = mi.corner_verts(mesh)
    uvs = np.stack([((cv % 4) + 0.5) / 4.0, np.full(len(cv), 0.5)], -1).astype(np.float32)
    uv.data.foreach_set("uv", uvs.ravel())
    img = bpy.data.images.new("tex", 4, 1)
    texels = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1], [0.5, 0.5, 0.5, 1]], np.float32)
    img.pixels.foreach_set(texels.ravel())
    mat = bpy.data.materials.new("tex")
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.image = img
    mesh.materials.append(mat)
    got = mi.read_texture_colors(obj)
    np.testing.assert_allclose(got, texels[np.arange(len(verts)) % 4, :3], atol=1 / 255)  # 8-bit image
