"""The add-on's Dataset panel: the operator starts a background Blender, the add-on's one timer (called
directly: timers never fire under the bpy wheel) follows its progress, cancel stops it, a re-run resumes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from backend.data.dataset import Dataset
from tests.helpers.render import avatar

pytestmark = pytest.mark.blender

bpy = pytest.importorskip("bpy")


@pytest.fixture(scope="module")
def panel():
    """The runtime module of the registered add-on: ours, or the one another test registered (source
    add-on or built extension), whose timer and dataset job the operators then use."""
    import importlib

    import blender_addon

    registered = getattr(bpy.types, "AVATEX_OT_render_dataset", None)
    if registered is not None and hasattr(bpy.types.Scene, "avatex_dataset"):
        yield importlib.import_module(registered.__module__.rsplit(".", 1)[0] + ".runtime")
        return
    blender_addon.register()
    yield importlib.import_module("blender_addon.runtime")
    blender_addon.unregister()


@pytest.fixture
def props(panel, tmp_path):
    p = bpy.context.scene.avatex_dataset
    p.source = "FILES"
    p.files = str(avatar("avatar_0001", ".ply"))
    p.output_dir = str(tmp_path / "ds")
    p.views, p.step, p.resolution, p.samples = 2, 90.0, 48, 2
    p.level_wild = p.level_intermediate = p.level_clear = True
    p.level_hdri = False
    p.extra_levels = p.light_config = ""
    p.status = ""
    return p


def _wait(panel, until=None, timeout: float = 300.0) -> None:
    """Drive the add-on's one timer like Blender would, until the dataset job ends (or ``until()``)."""
    deadline = time.monotonic() + timeout
    while True:
        panel.tick()
        if not panel.RUNTIME.dataset.running or (until is not None and until()):
            return
        assert time.monotonic() < deadline, "dataset render did not finish"
        time.sleep(0.1)


def test_panel_is_in_the_avatex_sidebar(panel):
    assert bpy.types.AVATEX_PT_dataset.bl_category == "avatex"
    assert bpy.types.AVATEX_PT_dataset.bl_space_type == "VIEW_3D"


def test_operator_renders_files_in_the_background(panel, props):
    assert bpy.ops.avatex.render_dataset() == {"FINISHED"}
    assert props.is_running  # returned at once: the render runs in another process
    _wait(panel)
    assert not props.is_running and props.progress == 1.0
    assert props.status.startswith("done: 8 images"), props.status  # 2 views x (albedo + 3 levels)
    ds = Dataset(props.output_dir)
    assert ds.subjects() == ["avatar_0001"] and ds.views_of("avatar_0001") == [0, 1]


def test_selected_scene_objects_are_a_subject(panel, props):
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5, location=(3.0, 0.0, 1.0))
    ob = bpy.context.active_object
    ob.name = "painted_ball"
    attr = ob.data.color_attributes.new("Col", "BYTE_COLOR", "POINT")
    for item in attr.data:
        item.color_srgb = (0.8, 0.2, 0.2, 1.0)
    try:
        for other in bpy.context.selected_objects:
            other.select_set(other == ob)
        props.source = "SELECTED"
        assert bpy.ops.avatex.render_dataset() == {"FINISHED"}
        _wait(panel)
        assert props.status.startswith("done"), props.status
        ds = Dataset(props.output_dir)
        assert ds.subjects() == ["painted_ball"]
        albedo = ds.albedo("painted_ball", 0)
        np.testing.assert_array_equal(albedo[24, 24], [204, 51, 51, 255])  # sRGB bytes in, same bytes out
        assert ds.gt_mesh("painted_ball").vertex_colors[0] == pytest.approx([0.8, 0.2, 0.2], abs=1 / 255)
    finally:
        bpy.data.objects.remove(ob)


def test_each_child_collection_is_a_subject(panel, props):
    crowd = bpy.data.collections.new("crowd")
    bpy.context.scene.collection.children.link(crowd)
    made = []
    try:
        for k, color in enumerate(((0.2, 0.6, 0.2, 1.0), (0.2, 0.2, 0.7, 1.0))):
            child = bpy.data.collections.new(f"person_{k}")
            crowd.children.link(child)
            mesh = bpy.data.meshes.new(f"body_{k}")
            ob = bpy.data.objects.new(f"body_{k}", mesh)
            child.objects.link(ob)
            import bmesh

            bm = bmesh.new()
            bmesh.ops.create_uvsphere(bm, u_segments=16, v_segments=8, radius=0.4)
            bm.to_mesh(mesh)
            bm.free()
            attr = mesh.color_attributes.new("Col", "BYTE_COLOR", "POINT")
            for item in attr.data:
                item.color_srgb = color
            made += [ob, child]
        props.source = "COLLECTION"
        props.collection = crowd
        assert bpy.ops.avatex.render_dataset() == {"FINISHED"}
        _wait(panel)
        assert props.status.startswith("done"), props.status
        ds = Dataset(props.output_dir)
        assert ds.subjects() == ["person_0", "person_1"]
        assert ds.albedo("person_1", 0)[24, 24, 2] == 179  # 0.7 * 255, the child's own colour
    finally:
        props.collection = None
        for item in made:
            (bpy.data.objects if isinstance(item, bpy.types.Object) else bpy.data.collections).remove(item)
        bpy.data.collections.remove(crowd)


@pytest.mark.slow
def test_cancel_keeps_finished_views_and_a_rerun_resumes(panel, props):
    props.views, props.step = 6, 60.0
    assert bpy.ops.avatex.render_dataset() == {"FINISHED"}
    job = panel.RUNTIME.dataset.render
    _wait(panel, until=lambda: job.rendered_images >= 5)  # past the first view (4 images per view)
    assert bpy.ops.avatex.cancel_dataset() == {"FINISHED"}
    _wait(panel)
    assert "cancelled" in props.status and not props.is_running
    finished = Dataset(props.output_dir).views_of("avatar_0001")
    assert 1 <= len(finished) < 6
    assert bpy.ops.avatex.render_dataset() == {"FINISHED"}
    _wait(panel)
    assert props.status.startswith("done"), props.status
    assert f"{len(finished)} views skipped" in props.status
    assert Dataset(props.output_dir).views_of("avatar_0001") == list(range(6))


def test_bad_settings_are_reported_not_started(panel, props):
    props.output_dir = ""
    with pytest.raises(RuntimeError, match="choose an output folder"):
        bpy.ops.avatex.render_dataset()
    props.output_dir = "/tmp/unused"
    props.level_wild = props.level_intermediate = props.level_clear = False
    with pytest.raises(RuntimeError, match="at least one lighting level"):
        bpy.ops.avatex.render_dataset()
    props.level_clear = True
    props.files = "/nonexistent/mesh.ply"
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.avatex.render_dataset()
