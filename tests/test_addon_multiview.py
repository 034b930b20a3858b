"""The Reconstruct panel's Cameras source under the bpy wheel: calibrations of scene cameras, one-line
errors, and a multi-view reconstruction through a real backend landing at the cursor, at scale."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from avatex_core import canonical  # noqa: E402
from blender_addon import cameras, runtime  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.helpers.addon import addon, connect_runtime, empty_scene, finished_task  # noqa: E402, F401, F811

pytestmark = pytest.mark.blender

SIZE = 64


def person_rgba(size: int = SIZE, shift: int = 0) -> np.ndarray:
    """A standing cut-out (float RGBA in [0, 1], top row first)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    alpha = ((np.abs(xx - 0.5 - shift / size) < 0.1) & (yy > 0.06) & (yy < 0.94)).astype(np.float32)
    rgba = np.zeros((size, size, 4), np.float32)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = xx, yy, 0.5, alpha
    return rgba


def view_camera(name: str, yaw: float, scale: float = 1.0, origin=(0.0, 0.0, 0.0), image: str | None = None,
                size: int = SIZE):
    """A camera placed like the renderer's view at ``yaw`` (docs/dataset.md), scaled about ``origin``."""
    from mathutils import Matrix

    data = bpy.data.cameras.new(name)
    data.type = "ORTHO"
    data.ortho_scale = canonical.ortho_scale(size) * scale
    cam = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(cam)
    pose = canonical.BLENDER_FROM_CANONICAL @ canonical.camera_to_canonical(yaw, 0.0, 10.0)
    pose[:3, 3] = pose[:3, 3] * scale + np.asarray(origin)
    cam.matrix_world = Matrix(pose.tolist())
    if image is not None:
        cam[cameras.IMAGE_PROPERTY] = image
    cam.select_set(True)
    return cam


def image_block(name: str, rgba: np.ndarray):
    img = bpy.data.images.new(name, rgba.shape[1], rgba.shape[0], alpha=True)
    img.pixels.foreach_set(rgba[::-1].ravel())
    return img


def test_scene_cameras_placed_like_dataset_views_get_the_dataset_calibs():
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = SIZE
    scene.render.resolution_percentage = 100
    for scale, origin in ((1.0, (0.0, 0.0, 0.0)), (2.5, (1.0, -2.0, 0.7))):
        for obj in list(bpy.data.objects):
            bpy.data.objects.remove(obj)
        scene.cursor.location = origin
        image_block("front", person_rgba())
        image_block("side", person_rgba(shift=3))
        view_camera("a_front", 0.0, scale, origin, "front")
        view_camera("b_side", 90.0, scale, origin, "side")
        views, calibs, unit = cameras.camera_views(bpy.context)
        assert views.shape == (2, SIZE, SIZE, 4) and views.dtype == np.uint8
        assert unit == pytest.approx(scale)
        for calib, yaw in zip(calibs, (0.0, 90.0), strict=True):
            np.testing.assert_allclose(calib, canonical.calib_for_view(yaw), atol=1e-5)
        assert views[1, :, :, 3].any() and not np.array_equal(views[0], views[1])


def test_camera_problems_are_one_line_errors():
    s = bpy.context.scene.avatex
    s.image_source = "CAMERAS"
    with pytest.raises(RuntimeError, match="select one or more orthographic cameras"):
        bpy.ops.avatex.reconstruct()
    image_block("opaque", np.ones((SIZE, SIZE, 4), np.float32))
    cam = view_camera("front", 0.0, image="opaque")
    with pytest.raises(RuntimeError, match="camera 'front' has no alpha to use as the person's mask"):
        bpy.ops.avatex.reconstruct()
    cam[cameras.IMAGE_PROPERTY] = "nowhere"
    with pytest.raises(RuntimeError, match="names image 'nowhere', which is not in this file"):
        bpy.ops.avatex.reconstruct()
    cam.data.type = "PERSP"
    with pytest.raises(RuntimeError, match="camera 'front' is persp: PIFu's calibrations are orthographic"):
        bpy.ops.avatex.reconstruct()
    cam.data.type = "ORTHO"
    image_block("small", person_rgba(32))
    image_block("big", person_rgba(64))
    cam[cameras.IMAGE_PROPERTY] = "small"
    view_camera("side", 90.0, image="big")
    with pytest.raises(RuntimeError, match="differ in size: front 32×32, side 64×64"):
        bpy.ops.avatex.reconstruct()
    s.texture = "1024"
    with pytest.raises(RuntimeError, match="set Texture to None for cameras"):
        bpy.ops.avatex.reconstruct()


@pytest.mark.slow
def test_cameras_reconstruct_through_a_real_backend_and_land_at_the_cursor_at_scale(monkeypatch):
    """One camera reads its photo, the other renders the scene (a mesh standing at the cursor); the
    backend fuses both views and the mesh comes back placed in the scene's frame."""
    from tests.helpers.server import spawn_test_server

    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.resolution_x = scene.render.resolution_y = SIZE
    scene.render.resolution_percentage = 100
    origin, scale = (0.5, 0.0, 1.0), 1.2
    scene.cursor.location = origin
    bpy.ops.mesh.primitive_cylinder_add(radius=0.25 * scale, depth=1.7 * scale, location=origin)
    bpy.ops.object.select_all(action="DESELECT")
    image_block("front", person_rgba())
    view_camera("a_front", 0.0, scale, origin, "front")
    view_camera("b_side", 90.0, scale, origin)   # rendered
    s = scene.avatex
    s.image_source, s.resolution = "CAMERAS", 32
    s.checkpoint = str(ROOT / "backend" / "assets" / "pifu_small.pt")
    server = spawn_test_server("--root", str(ROOT / "backend" / "assets"))
    try:
        connect_runtime(monkeypatch, server.endpoint)
        assert bpy.ops.avatex.reconstruct() == {"FINISHED"}
        task = finished_task("reconstruct")
        assert task.state == "done", task.message
        obj = bpy.data.objects["cameras"]
        assert obj["avatex_views"] == 2 and len(obj.data.vertices) > 50
        expected = canonical.BLENDER_FROM_CANONICAL @ np.diag([scale, scale, scale, 1.0])
        expected[:3, 3] = origin
        np.testing.assert_allclose(np.asarray(obj.matrix_world), expected, atol=1e-5)
        assert scene.camera is None or scene.camera.name != "b_side"   # the render left the scene as it was
    finally:
        runtime.RUNTIME.disconnect()
        server.close()
