"""Textured output (backend/recon/texture.py): rasterising, baking, decimation, GLB/OBJ export, the CLI,
`avatex evaluate` on a textured mesh and a Blender glTF import round trip."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avatex_core import canonical
from backend.errors import InputError
from backend.meshio import load_mesh, sample_surface
from backend.recon.analytic import body_image, body_occupancy
from backend.recon.grid import GridSpec, evaluate_coarse_to_fine
from backend.recon.mesh import extract_surface, signed_volume
from backend.recon.texture import (
    DEFAULT_SMOOTH,
    ImageDetail,
    chart_of_faces,
    decimate,
    depth_map,
    dilate,
    glb_bytes,
    rasterize,
    save_textured,
    smooth_on_charts,
    snap_to_surface,
    texture_mesh,
    uv_to_pixels,
)

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "backend" / "assets" / "pifu_small.pt"


def field(points: np.ndarray) -> np.ndarray:
    """A smooth colour field with detail finer than the decimated mesh's vertex spacing."""
    p = np.asarray(points, dtype=np.float64)
    return np.clip(0.5 + 0.5 * np.sin(np.stack([40 * p[:, 0], 50 * p[:, 1], 30 * p[:, 2] + 1], 1)), 0, 1
                   ).astype(np.float32)


@pytest.fixture(scope="module")
def body():
    spec = GridSpec(128, canonical.BOX_MIN, canonical.BOX_MAX)
    grid = evaluate_coarse_to_fine(body_occupancy, spec, batch_size=65536)
    return extract_surface(grid.volume, spec)


@pytest.fixture(scope="module")
def textured(body):
    vertices, faces = body
    # smooth=0: the bake itself must reproduce the field; the low-pass has its own test.
    return texture_mesh(vertices, faces, field, size=1024, target_faces=6000, smooth=0.0)


def test_rasterize_covers_each_texel_centre_once_with_exact_barycentrics():
    # Two triangles tiling a 7 x 5 rectangle: every centre is covered exactly once, shared edge included.
    xy = np.array([[0, 0], [7, 0], [7, 5], [0, 5]], dtype=np.float64)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    pix, face, bary = rasterize(xy, faces, 7, 5, chunk=8)   # small chunk: the grouping is exercised too
    assert sorted(pix.tolist()) == list(range(35))
    centres = np.stack([pix % 7 + 0.5, pix // 7 + 0.5], axis=1)
    np.testing.assert_allclose(np.einsum("kc,kcj->kj", bary, xy[faces[face]]), centres, atol=1e-9)
    # A sliver that covers no centre yields nothing; one clipped by the image keeps only inside texels.
    assert len(rasterize(np.array([[0.1, 0.1], [0.4, 0.1], [0.1, 0.4]]), faces[:1], 4, 4)[0]) == 0
    pix, _, _ = rasterize(np.array([[-3.0, -3.0], [9.0, -3.0], [-3.0, 9.0]]), faces[:1], 4, 4)
    assert pix.min() >= 0 and pix.max() < 16


def test_dilate_fills_gutters_from_the_nearest_island():
    image = np.zeros((4, 6, 3), np.uint8)
    filled = np.zeros((4, 6), bool)
    image[:, 0], filled[:, 0] = 200, True
    image[:, 5], filled[:, 5] = 50, True
    out = dilate(image, filled)
    assert (out[:, 1:3] == 200).all() and (out[:, 3:5] == 50).all()


def test_decimate_hits_the_budget_and_keeps_shape_and_winding(body):
    vertices, faces = body
    v, f = decimate(vertices, faces, 5000)
    assert 4500 <= len(f) <= 5000
    full, small = signed_volume(vertices, faces), signed_volume(v, f)
    assert small > 0 and abs(small - full) / full < 0.02
    np.testing.assert_allclose(v.min(0), vertices.min(0), atol=0.01)
    np.testing.assert_allclose(v.max(0), vertices.max(0), atol=0.01)
    same_v, same_f = decimate(vertices[:50], faces[:40], 5000)
    assert len(same_f) == 40
    with pytest.raises(InputError, match="target face count"):
        decimate(vertices, faces, 10)


def test_baked_texture_reproduces_the_field_on_the_surface(textured):
    assert 5400 <= len(textured.faces) <= 6000
    assert textured.uv.min() >= 0.0 and textured.uv.max() <= 1.0
    assert 0.3 < textured.stats["coverage"] < 0.95
    # Every texel centre of every face maps back to its own 3D point: re-sample at random surface points.
    rng = np.random.default_rng(0)
    from backend.meshio import ColoredMesh

    mesh = ColoredMesh(textured.vertices.astype(np.float64), textured.faces.astype(np.int64),
                       uv=textured.uv, textures=[textured.texture],
                       face_material=np.zeros(len(textured.faces), np.int32))
    points, fi, bary = sample_surface(mesh, 50_000, rng)
    error = np.abs(mesh.colors_at(fi, bary) - field(points)).mean()
    # The same field as vertex colours on the same decimated mesh is much blurrier.
    vertex_error = np.abs(np.einsum("mk,mkj->mj", bary, field(textured.vertices)[textured.faces[fi]])
                          - field(points)).mean()
    assert error < 0.02 and error < vertex_error / 4
    # No texel is left black: the gutters hold island colours, so seams do not bleed the background.
    # (Half the texels are gutter; the field itself is almost never black in all three channels.)
    assert (textured.texture.reshape(-1, 3).max(axis=1) == 0).mean() < 0.001


def _sine_amplitude(points: np.ndarray, values: np.ndarray, wavelength: float) -> float:
    """Least-squares amplitude of ``values`` ~ a + b sin(2 pi y / wavelength) + c cos(...)."""
    phase = 2 * np.pi * points[:, 1] / wavelength
    design = np.stack([np.ones_like(phase), np.sin(phase), np.cos(phase)], axis=1)
    coef = np.linalg.lstsq(design, values, rcond=None)[0]
    return float(np.hypot(coef[1], coef[2]))


def test_smoothing_is_a_gaussian_of_its_width_along_the_surface(body):
    """A sinusoid of wavelength 5 cm up the body loses amplitude like a Gaussian low-pass of sigma 8 mm
    (exp(-2 pi^2 sigma^2 / wavelength^2) = 0.60), whatever the texture size: sigma is in surface units."""
    wavelength, sigma = 0.05, 0.008
    vertices, faces = body

    def sine(points: np.ndarray) -> np.ndarray:
        v = 0.5 + 0.25 * np.sin(2 * np.pi * np.asarray(points)[:, 1] / wavelength)
        return np.repeat(v[:, None], 3, axis=1).astype(np.float32)

    want = np.exp(-2 * np.pi ** 2 * sigma ** 2 / wavelength ** 2)
    texels = {}
    for size in (512, 1024):
        sharp = texture_mesh(vertices, faces, sine, size=size, target_faces=6000, smooth=0.0)
        smooth = texture_mesh(vertices, faces, sine, size=size, target_faces=6000, smooth=sigma)
        (pa, _, ca), (pb, _, cb) = _textured_points(sharp), _textured_points(smooth)
        ratio = _sine_amplitude(pb, cb[:, 0], wavelength) / _sine_amplitude(pa, ca[:, 0], wavelength)
        assert abs(ratio - want) < 0.1, (size, ratio, want)
        assert smooth.stats["smooth"]["sigma"] == sigma
        texels[size] = smooth.stats["smooth"]["sigma_texels"]
    assert texels[1024] == pytest.approx(2 * texels[512], rel=0.05)   # the same width on the surface
    with pytest.raises(InputError, match="smoothing"):
        texture_mesh(vertices, faces, sine, size=512, target_faces=6000, smooth=-0.01)


def test_smoothing_stays_inside_each_chart():
    """Two charts that touch in the atlas, each one flat colour: a Gaussian over the image would mix them
    at the border; the per-chart low-pass leaves both exactly as they were, and a step inside one chart
    does get blurred."""
    size = 64
    yy, xx = np.mgrid[8:40, 4:44]
    pix = (yy * size + xx).ravel()
    chart = (xx >= 24).ravel().astype(np.int64)
    colors = np.where(chart[:, None] == 0, [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]).astype(np.float32)
    out = smooth_on_charts(colors, pix, chart, size, 3.0)
    assert np.allclose(out, colors, atol=1e-6)
    step = colors.copy()
    step[(xx.ravel() < 14)] = [0.0, 1.0, 0.0]
    blurred = smooth_on_charts(step, pix, chart, size, 3.0)
    border = (xx.ravel() == 13) | (xx.ravel() == 14)
    assert np.all(blurred[border, 1] > 0.2) and np.all(blurred[border, 1] < 0.8)
    assert np.allclose(blurred[chart == 1], colors[chart == 1], atol=1e-6)


def test_charts_are_the_connected_uv_components(textured):
    charts = chart_of_faces(textured.faces, len(textured.vertices))
    assert charts.shape == (len(textured.faces),) and charts.min() == 0
    assert 2 <= charts.max() + 1 < len(textured.faces) // 4
    # A shared UV vertex means a shared chart: every vertex's faces agree on it.
    chart_of_vertex = np.full(len(textured.vertices), -1)
    chart_of_vertex[textured.faces.ravel()] = np.repeat(charts, 3)
    assert np.all(chart_of_vertex[textured.faces] == charts[:, None])


def _textured_points(tm, count: int = 40_000):
    """Surface samples of a textured mesh: (points, unit face normals, texture colours)."""
    from backend import triangles
    from backend.meshio import ColoredMesh

    mesh = ColoredMesh(tm.vertices.astype(np.float64), tm.faces.astype(np.int64), uv=tm.uv,
                       textures=[tm.texture], face_material=np.zeros(len(tm.faces), np.int32))
    points, fi, bary = sample_surface(mesh, count, np.random.default_rng(1))
    return points, triangles.unit_normals(mesh.vertices, mesh.faces)[fi], mesh.colors_at(fi, bary)


def _stripes(size: int = 512, period: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(framed rgb: grey with vertical black/white stripes of ``period`` pixels, the body's mask, the
    stripe value at every pixel), in the yaw-0 framing of ``body_image``."""
    mask = body_image(size)[..., 3].astype(np.float32) / 255.0
    stripe = ((np.arange(size) // (period // 2)) % 2).astype(np.float32)[None, :].repeat(size, axis=0)
    rgb = np.repeat((0.2 + 0.6 * stripe)[..., None], 3, axis=2)
    return rgb, mask, stripe


def grey(points: np.ndarray) -> np.ndarray:
    return np.full((len(points), 3), 0.5, np.float32)


def test_blend_puts_the_images_fine_pattern_on_the_front_texels_only(body):
    vertices, faces = body
    rgb, mask, stripe = _stripes(period=8)
    calib = canonical.calib_for_view(0.0)
    detail = ImageDetail.from_view(rgb, mask, vertices, faces, calib, "blend", sigma=4.0)
    tm = texture_mesh(vertices, faces, grey, size=512, target_faces=4000, detail=detail)
    points, normals, colors = _textured_points(tm)
    front, back = normals[:, 2] > 0.8, normals[:, 2] < -0.5
    assert front.sum() > 5000 and back.sum() > 5000
    # The back (and everything the camera cannot see) keeps the net's colour exactly, except where a
    # bilinear lookup at a chart's edge reads a camera-facing neighbour's texel.
    assert np.quantile(np.abs(colors[back] - 0.5).max(axis=1), 0.99) <= 1.0 / 255 + 1e-6
    # The front carries the stripes: high-pass of a 0.2/0.8 pattern is about +-0.3 around the net's grey.
    px = np.rint(canonical.to_pixels(canonical.project(points[front], calib)[:, :2], 512)).astype(int)
    s = stripe[px[:, 1], px[:, 0]]
    lum = colors[front].mean(axis=1)
    assert lum[s == 1].mean() - lum[s == 0].mean() > 0.3
    assert abs(lum.mean() - 0.5) < 0.05        # the net's low frequencies stay: mean grey, not the image's
    assert tm.stats["detail"]["mode"] == "blend" and 0.1 < tm.stats["detail"]["image_share"] < 0.6


def test_image_mode_copies_the_visible_image_and_keeps_the_net_elsewhere(body):
    vertices, faces = body
    _, mask, _ = _stripes()
    red = np.zeros((512, 512, 3), np.float32)
    red[..., 0] = 1.0
    detail = ImageDetail.from_view(red, mask, vertices, faces, canonical.calib_for_view(0.0), "image")
    tm = texture_mesh(vertices, faces, grey, size=512, target_faces=4000, detail=detail)
    _, normals, colors = _textured_points(tm)
    np.testing.assert_allclose(colors[normals[:, 2] > 0.8].mean(axis=0), [1.0, 0.0, 0.0], atol=0.03)
    assert np.quantile(np.abs(colors[normals[:, 2] < -0.5] - 0.5).max(axis=1), 0.99) <= 1.0 / 255 + 1e-6


def test_image_detail_skips_texels_hidden_from_the_camera():
    # Two camera-facing squares, the near one (z = 0.5) hiding the middle of the far one (z = -0.5).
    quad = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    near = np.c_[quad * 0.3, np.full(4, 0.5)]
    far = np.c_[quad * 0.8, np.full(4, -0.5)]
    vertices = np.concatenate([near, far])
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    calib = canonical.calib_for_view(0.0)
    depth = depth_map(vertices, faces, calib, 64)
    assert depth[32, 32] == pytest.approx(0.5) and depth[32, 10] == pytest.approx(-0.5)
    assert np.isneginf(depth[0, 0])
    detail = ImageDetail.from_view(np.ones((64, 64, 3), np.float32), np.ones((64, 64), np.float32),
                                   vertices, faces, calib, "image")
    points = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, -0.5], [0.6, 0.0, -0.5], [0.0, 0.0, 0.5]])
    normals = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, -1.0]])
    w, _ = detail.weights(points, normals)
    # visible; hidden behind the near square; visible beside it; facing away
    np.testing.assert_allclose(w, [1.0, 0.0, 1.0, 0.0])
    with pytest.raises(InputError, match="'image' or 'blend'"):
        ImageDetail.from_view(np.ones((8, 8, 3)), np.ones((8, 8)), vertices, faces, calib, "net")


def test_snap_moves_texel_points_onto_the_full_surface(body):
    vertices, faces = body
    v, f = decimate(vertices, faces, 2000)
    rng = np.random.default_rng(0)
    from backend.meshio import ColoredMesh

    points = sample_surface(ColoredMesh(v.astype(np.float64), f.astype(np.int64)), 3000, rng)[0]
    snapped = snap_to_surface(points.astype(np.float32), vertices, faces)
    from backend.metrics.geometry import point_to_surface

    before = point_to_surface(points, vertices, faces)[0]
    after = point_to_surface(snapped, vertices, faces)[0]
    assert before.mean() > 1e-4 and after.max() < 1e-5
    tm = texture_mesh(vertices, faces, field, size=512, target_faces=2000, snap=True)
    assert tm.stats["snap"] and 0 < tm.stats["snap_distance_mean"] < 0.01


def _glb_json(data: bytes) -> dict:
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and length == len(data)
    chunk_len, chunk_type = struct.unpack_from("<I4s", data, 12)
    assert chunk_type == b"JSON"
    return json.loads(data[20:20 + chunk_len])


def test_glb_holds_the_texture_and_texcoords(textured, tmp_path):
    import trimesh

    out = tmp_path / "avatar.glb"
    assert save_textured(out, textured) == [out]
    doc = _glb_json(out.read_bytes())
    primitive = doc["meshes"][0]["primitives"][0]
    assert {"POSITION", "TEXCOORD_0"} <= set(primitive["attributes"])
    material = doc["materials"][primitive["material"]]
    texture = doc["textures"][material["pbrMetallicRoughness"]["baseColorTexture"]["index"]]
    image = doc["images"][texture["source"]]
    assert image["mimeType"] == "image/png" and "bufferView" in image

    scene = trimesh.load(out)
    geometry = next(iter(scene.geometry.values()))
    assert isinstance(geometry.visual, trimesh.visual.TextureVisuals)
    assert geometry.visual.material.baseColorTexture.size == (1024, 1024)
    uv = np.asarray(geometry.visual.uv)
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    loaded = load_mesh(out)
    assert loaded.has_texture
    np.testing.assert_array_equal(loaded.textures[0], textured.texture)
    vertex_error = np.abs(loaded.per_vertex_colors() - field(loaded.vertices)).max(axis=1)
    assert np.median(vertex_error) < 0.02 and (vertex_error < 0.1).mean() > 0.99
    assert textured.stats["uncharted_faces"] <= 0.002 * len(textured.faces)

    with pytest.raises(InputError, match="refusing to overwrite avatar.glb"):
        save_textured(out, textured)


def test_obj_mtl_png_round_trip(textured, tmp_path):
    out = tmp_path / "avatar.obj"
    written = save_textured(out, textured)
    assert [p.name for p in written] == ["avatar.obj", "avatar.mtl", "avatar.png"]
    assert "map_Kd avatar.png" in (tmp_path / "avatar.mtl").read_text()
    loaded = load_mesh(out)
    assert loaded.has_texture and len(loaded.faces) == len(textured.faces)
    np.testing.assert_array_equal(loaded.textures[0], textured.texture)
    with pytest.raises(InputError, match="not '.ply'"):
        save_textured(tmp_path / "x.ply", textured)
    (tmp_path / "b.png").write_bytes(b"someone else's")
    with pytest.raises(InputError, match="refusing to overwrite b.png"):
        save_textured(tmp_path / "b.obj", textured)
    assert (tmp_path / "b.png").read_bytes() == b"someone else's" and not (tmp_path / "b.obj").exists()
    with pytest.raises(InputError, match="texture size"):
        texture_mesh(textured.vertices, textured.faces, field, size=300)


def test_uv_to_pixels_matches_the_texture_lookup():
    # UV (0, 0) is the image's bottom-left corner: texel row size - 1, as backend.meshio.sample_texture reads.
    px = uv_to_pixels(np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]]), 8)
    np.testing.assert_allclose(px, [[0, 8], [8, 0], [4, 4]])


@pytest.mark.slow
def test_cli_writes_a_textured_glb_that_evaluate_reads(tmp_path):
    from PIL import Image

    image = tmp_path / "body.png"
    Image.fromarray(body_image(256)).save(image)
    out = tmp_path / "recon.glb"
    cmd = [sys.executable, "-m", "backend", "reconstruct", str(image), "--checkpoint", str(CHECKPOINT),
           "--out", str(out), "--texture", "512", "--faces", "3000", "--resolution", "64", "--no-progress",
           "--device", "cpu"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "3000 faces" in run.stdout and "512² texture" in run.stdout
    mesh = load_mesh(out)
    assert mesh.has_texture and len(mesh.faces) <= 3000
    before = out.read_bytes()
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert again.returncode != 0 and "recon.glb' already exists" in again.stderr   # refused before the work
    assert len(again.stderr.strip().splitlines()) == 1 and out.read_bytes() == before
    replaced = subprocess.run([*cmd, "--overwrite"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert replaced.returncode == 0, replaced.stderr
    detailed = subprocess.run([*cmd[:cmd.index("--out") + 1], str(tmp_path / "detail.obj"),
                               *cmd[cmd.index("--out") + 2:], "--texture-detail", "blend"],
                              capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert detailed.returncode == 0, detailed.stderr
    assert "blend detail" in detailed.stdout and (tmp_path / "detail.png").is_file()

    gt = tmp_path / "gt.ply"
    from backend.meshio import save_mesh

    save_mesh(gt, mesh.vertices, mesh.faces, mesh.per_vertex_colors())
    ev = subprocess.run([sys.executable, "-m", "backend", "evaluate", "--pred", str(out), "--gt", str(gt),
                         "--json", "--no-geometry", "--device", "cpu"],
                        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert ev.returncode == 0, ev.stderr
    report = json.loads(ev.stdout)
    assert report["patd"]["mean"] < 0.5   # the texture at the vertices is the GT's own colours


@pytest.mark.parametrize("argv, message", [
    (["--texture", "1024", "--out", "x.ply"], "with --texture, --out must end in .glb or .obj"),
    (["--out", "x.glb"], ".glb needs --texture"),
    (["--texture", "1024", "--faces", "5", "--out", "x.glb"], "--faces must be at least 100"),
    (["--texture-smooth", "0.01", "--out", "x.ply"], "--texture-smooth needs --texture"),
    (["--texture", "1024", "--texture-smooth", "-1", "--out", "x.glb"],
     "--texture-smooth must be in [0, 0.1]"),
])
def test_cli_rejects_bad_textured_options_in_one_line(tmp_path, argv, message):
    run = subprocess.run([sys.executable, "-m", "backend", "reconstruct", "img.png", "--checkpoint", "c.pt",
                          *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode != 0 and message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_glb_bytes_are_deterministic(textured):
    assert glb_bytes(textured) == glb_bytes(textured)


@pytest.mark.blender
def test_blender_imports_the_glb_with_its_texture(textured, tmp_path):
    pytest.importorskip("bpy")
    out = tmp_path / "avatar.glb"
    save_textured(out, textured)
    script = f"""
import bpy, json
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath={str(out)!r})
obj = next(o for o in bpy.data.objects if o.type == "MESH")
mat = obj.active_material
tex = [n for n in mat.node_tree.nodes if n.type == "TEX_IMAGE"]
bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
linked = [l.from_node.type for l in mat.node_tree.links if l.to_socket == bsdf.inputs["Base Color"]]
print(json.dumps({{"faces": len(obj.data.polygons), "uv_layers": len(obj.data.uv_layers),
                  "size": list(tex[0].image.size) if tex else None, "base": linked,
                  "height": obj.dimensions.z, "up": list(obj.dimensions)}}))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    info = json.loads(run.stdout.strip().splitlines()[-1])
    assert info["faces"] == len(textured.faces) and info["uv_layers"] == 1
    assert info["size"] == [1024, 1024] and info["base"] == ["TEX_IMAGE"]
    # glTF is y-up; Blender is z-up: the body's height lands on Blender's z.
    height = float(textured.vertices[:, 1].max() - textured.vertices[:, 1].min())
    assert abs(info["height"] - height) < 1e-3


@pytest.mark.slow
def test_server_reconstruct_with_texture_returns_and_saves_the_textured_mesh(tmp_path):
    import shutil

    from avatex_core.client import BackendError, Client
    from backend.meshio import sample_texture
    from tests.helpers.server import running_server

    shutil.copy(CHECKPOINT, tmp_path / "small.pt")
    image = body_image(256)
    with running_server(roots=[tmp_path], devices=["cpu"]) as server, Client(server.endpoint) as client:
        stages = []
        res = client.call("reconstruct", {"checkpoint": "small.pt", "resolution": 64, "texture": 512,
                                          "faces": 2000, "out": "out/rec.glb", "texture_detail": "blend"},
                          {"image": image}, timeout=600, on_progress=lambda e: stages.append(e.stage))
        sharp = client.call("reconstruct", {"checkpoint": "small.pt", "resolution": 64, "texture": 512,
                                            "faces": 2000, "texture_smooth": 0.02}, {"image": image},
                            timeout=600)
        with pytest.raises(BackendError, match="texture_smooth"):
            client.call("reconstruct", {"checkpoint": "small.pt", "texture": 512, "texture_smooth": 0.5},
                        {"image": image}, timeout=60)
        with pytest.raises(BackendError, match="texture_detail"):
            client.call("reconstruct", {"checkpoint": "small.pt", "texture": 512, "texture_detail": "sharp"},
                        {"image": image}, timeout=60)
        with pytest.raises(BackendError, match="'out' must end in .glb or .obj with 'texture'"):
            client.call("reconstruct", {"checkpoint": "small.pt", "texture": 512, "out": "x.ply"},
                        {"image": image}, timeout=60)
        with pytest.raises(BackendError, match="texture"):
            client.call("reconstruct", {"checkpoint": "small.pt", "texture": 500}, {"image": image},
                        timeout=60)
    arrays = res.arrays
    assert arrays["texture"].shape == (512, 512, 3) and arrays["texture"].dtype == np.uint8
    assert arrays["uv"].shape == (len(arrays["vertices"]), 2) and len(arrays["faces"]) <= 2000
    np.testing.assert_allclose(arrays["colors"], sample_texture(arrays["texture"], arrays["uv"]))
    assert "texture" in stages and res.result["stats"]["texture"]["texture_size"] == 512
    assert res.result["stats"]["texture"]["detail"]["mode"] == "blend"
    assert res.result["stats"]["texture"].get("smooth", {}).get("sigma", 0.0) == DEFAULT_SMOOTH
    assert sharp.result["stats"]["texture"]["smooth"]["sigma"] == 0.02
    assert res.result["stats"]["texture"]["detail"]["image_texels"] > 1000
    saved = load_mesh(tmp_path / "out" / "rec.glb")
    assert saved.has_texture and len(saved.faces) == len(arrays["faces"])
