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


def _load_with_trimesh(path, keep_vertex_order=False):
    """load_mesh's general (trimesh) path, for comparison with its numpy PLY reader."""
    from backend import meshio

    fast = meshio._read_simple_ply
    meshio._read_simple_ply = lambda _path: None
    try:
        return load_mesh(path, keep_vertex_order=keep_vertex_order)
    finally:
        meshio._read_simple_ply = fast


def _messy_ply_mesh():
    """A coloured sphere with every face also present reversed, a stray vertex and a zero-area face."""
    sphere = trimesh.creation.icosphere(subdivisions=2)
    v = np.concatenate([sphere.vertices, [[5.0, 5.0, 5.0]]])
    f = np.concatenate([sphere.faces, sphere.faces[:40, ::-1], [[0, 0, 1]]])
    rgb = np.random.default_rng(0).integers(0, 256, (len(v), 4), dtype=np.uint8)
    return v, f, rgb


@pytest.mark.parametrize("keep_vertex_order", [False, True])
def test_binary_ply_reader_matches_trimesh_path(tmp_path, keep_vertex_order):
    v, f, rgb = _messy_ply_mesh()
    path = tmp_path / "messy.ply"
    trimesh.Trimesh(v, f, vertex_colors=rgb, process=False).export(path)  # trimesh's own writer, with alpha
    fast = load_mesh(path, keep_vertex_order=keep_vertex_order)
    slow = _load_with_trimesh(path, keep_vertex_order)
    assert fast.repairs == slow.repairs and len(fast.repairs) >= 2
    np.testing.assert_array_equal(fast.faces, slow.faces)
    np.testing.assert_array_equal(fast.vertices, slow.vertices)
    np.testing.assert_array_equal(fast.vertex_colors, slow.vertex_colors)
    assert len(fast.vertices) == (len(v) if keep_vertex_order else len(v) - 1)


def test_binary_ply_reader_leaves_other_plys_to_trimesh(tmp_path):
    from backend.meshio import _read_simple_ply

    v, f, rgb = _messy_ply_mesh()
    ours = tmp_path / "ours.ply"
    save_mesh(ours, v, f, rgb[:, :3])
    assert _read_simple_ply(ours) is not None
    ascii_path = tmp_path / "ascii.ply"
    plain = trimesh.Trimesh(v, f, process=False)
    ascii_path.write_bytes(trimesh.exchange.ply.export_ply(plain, encoding="ascii"))
    assert _read_simple_ply(ascii_path) is None
    quad = tmp_path / "quad.ply"
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
              "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n")
    corners = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], "<f4")
    quad.write_bytes(header.encode() + corners.tobytes() + bytes([4]) + np.arange(4, dtype="<i4").tobytes())
    assert _read_simple_ply(quad) is None
    assert len(load_mesh(quad).faces) == 2  # trimesh triangulates it
    truncated = tmp_path / "truncated.ply"
    truncated.write_bytes(ours.read_bytes()[:-5])
    assert _read_simple_ply(truncated) is None
    with pytest.raises(InputError, match="truncated.ply"):
        load_mesh(truncated)
    # An ASCII PLY still loads (through trimesh) and equals the binary one.
    np.testing.assert_array_equal(load_mesh(ascii_path).faces, load_mesh(ours).faces)
