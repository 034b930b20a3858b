import numpy as np
import pytest
import trimesh
from PIL import Image

from backend.errors import InputError
from backend.meshio import ColoredMesh, load_mesh, sample_surface, sample_texture, save_mesh


def _colored_box():
    box = trimesh.creation.box(extents=(1.0, 2.0, 0.5))
    colors = np.random.default_rng(1).random((len(box.vertices), 3)).astype(np.float32)
    return np.asarray(box.vertices), np.asarray(box.faces), colors


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_vertex_colour_round_trip(tmp_path, suffix):
    v, f, c = _colored_box()
    save_mesh(tmp_path / f"m{suffix}", v, f, c)
    m = load_mesh(tmp_path / f"m{suffix}")
    np.testing.assert_allclose(m.vertices, v, atol=1e-6)
    np.testing.assert_array_equal(m.faces, f)
    tol = 1e-6 if suffix == ".ply" else 1e-4
    np.testing.assert_allclose(m.vertex_colors, np.round(c * 255) / 255, atol=tol)
    assert not list(tmp_path.glob("*.tmp-*"))


def test_textured_obj_colors_at(tmp_path):
    # A quad whose texture is red on the left half and blue on the right half.
    tex = np.zeros((8, 8, 3), dtype=np.uint8)
    tex[:, :4] = [255, 0, 0]
    tex[:, 4:] = [0, 0, 255]
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = v[:, :2].copy()
    mesh = trimesh.Trimesh(v, f, visual=trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(tex)),
                           process=False)
    mesh.export(tmp_path / "quad.obj")
    m = load_mesh(tmp_path / "quad.obj")
    assert m.has_texture
    # Points at x = 0.1 (left) and x = 0.9 (right) on face 0 / face 1.
    left = m.colors_at(np.array([1]), np.array([[0.8, 0.1, 0.1]]))  # face 1 = (0, 2, 3) -> x ~= 0.1
    right = m.colors_at(np.array([0]), np.array([[0.1, 0.8, 0.1]]))  # face 0 -> x ~= 0.9
    np.testing.assert_allclose(left[0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(right[0], [0, 0, 1], atol=1e-6)


def test_sample_texture_orientation():
    img = np.zeros((2, 2, 3), dtype=np.uint8)
    img[0, 0] = [255, 255, 255]  # top-left texel = uv (0, 1)
    out = sample_texture(img, np.array([[0.25, 0.75], [0.75, 0.25]]))
    np.testing.assert_allclose(out, [[1, 1, 1], [0, 0, 0]])


def test_sample_surface_is_area_uniform():
    v, f, c = _colored_box()
    m = ColoredMesh(v, f, vertex_colors=c)
    pts, fi, bary = sample_surface(m, 60000, np.random.default_rng(0))
    # The 1x2 faces (z = +-0.25) hold 2*2 / (2*(2 + 0.5 + 1)) = 4/7 of the area.
    share = np.mean(np.isclose(np.abs(pts[:, 2]), 0.25))
    assert share == pytest.approx(4 / 7, abs=0.01)
    np.testing.assert_allclose(bary.sum(1), 1.0)
    cols = m.colors_at(fi, bary)
    assert cols.shape == (60000, 3) and cols.min() >= 0 and cols.max() <= 1


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_mesh(tmp_path / "nope.ply")
    (tmp_path / "x.xyz").write_text("1 2 3\n")
    with pytest.raises(InputError, match="unsupported"):
        load_mesh(tmp_path / "x.xyz")
