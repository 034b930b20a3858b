"""The add-on's textured reconstruct result: UV map, packed image and Principled BSDF material (bpy wheel)."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import mesh_import as mi  # noqa: E402
from blender_addon import tasks  # noqa: E402
from tests.helpers.addon import addon, empty_scene  # noqa: E402, F401, F811  (registration, clean scenes)

pytestmark = pytest.mark.blender


def test_textured_result_lands_with_uvs_image_and_material():
    n = 12
    x, y = np.meshgrid(np.arange(n, dtype=np.float32), np.arange(n, dtype=np.float32), indexing="ij")
    verts = np.stack([x.ravel(), y.ravel(), np.zeros(n * n, np.float32)], -1) / n
    i, j = np.arange(n - 1)[:, None], np.arange(n - 1)[None, :]
    a, b, c, d = i * n + j, (i + 1) * n + j, (i + 1) * n + j + 1, i * n + j + 1
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                            np.stack([a, c, d], -1).reshape(-1, 3)]).astype(np.int32)
    uv = (verts[:, :2] * n / (n - 1)).astype(np.float32)
    texture = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    arrays = {"vertices": verts, "faces": faces, "colors": np.full((n * n, 3), 0.5, np.float32),
              "uv": uv, "texture": texture}
    task = tasks.ReconstructTask("person", (0.0, 0.0, 0.0), {"avatex_kind": "reconstruction"})
    for _ in task.apply({}, arrays):
        pass
    obj = bpy.data.objects[task.object_name]
    mesh = obj.data
    layer = mesh.uv_layers.active
    got = np.empty(len(mesh.loops) * 2, np.float32)
    layer.data.foreach_get("uv", got)
    np.testing.assert_allclose(got.reshape(-1, 2), uv[mi.corner_verts(mesh)], atol=1e-6)
    mat = mesh.materials[0]
    tex = [nd for nd in mat.node_tree.nodes if nd.type == "TEX_IMAGE"]
    assert len(tex) == 1 and tex[0].outputs["Color"].links[0].to_socket.name == "Base Color"
    image = tex[0].image
    assert tuple(image.size) == (32, 16) and image.packed_file is not None
    pixels = np.empty(32 * 16 * 4, np.float32)
    image.pixels.foreach_get(pixels)
    # Blender stores rows bottom-up: its first row is the texture's last.
    np.testing.assert_allclose(pixels.reshape(16, 32, 4)[0, :, :3], texture[-1] / 255.0, atol=1e-6)
    assert obj["avatex_kind"] == "reconstruction"


def test_untextured_result_keeps_the_colour_attribute_material():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    task = tasks.ReconstructTask("tri", (0.0, 0.0, 0.0), {})
    for _ in task.apply({}, {"vertices": verts, "faces": np.array([[0, 1, 2]], np.int32),
                             "colors": np.full((3, 3), 0.5, np.float32)}):
        pass
    mesh = bpy.data.objects[task.object_name].data
    assert len(mesh.uv_layers) == 0
    assert [nd.type for nd in mesh.materials[0].node_tree.nodes if nd.type == "ATTRIBUTE"] == ["ATTRIBUTE"]


def test_an_automatic_mask_from_the_backend_lands_as_an_image_datablock():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    mask = np.zeros((6, 4), np.uint8)
    mask[1:5, 1:3] = 255
    mask[0, 0] = 255   # top-left: Blender keeps it in its last row
    task = tasks.ReconstructTask("photo", (0.0, 0.0, 0.0), {})
    arrays = {"vertices": verts, "faces": np.array([[0, 1, 2]], np.int32),
              "colors": np.full((3, 3), 0.5, np.float32), "mask": mask}
    for _ in task.apply({"mask": {"method": "pose"}}, arrays):
        pass
    image = bpy.data.images[task.mask_image]
    assert task.mask_image == "photo mask" and tuple(image.size) == (4, 6)
    pixels = np.empty(4 * 6 * 4, np.float32)
    image.pixels.foreach_get(pixels)
    np.testing.assert_allclose(pixels.reshape(6, 4, 4)[::-1, :, 0], mask / 255.0, atol=1e-6)
    obj = bpy.data.objects[task.object_name]
    assert obj["avatex_mask"] == "photo mask" and obj["avatex_mask_method"] == "pose"
    assert "automatic pose mask in image 'photo mask'" in task.done_message()
