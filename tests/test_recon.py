"""Reconstruction end to end: a real (small) PIFu, a real image, framing, mesh, colours, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial import cKDTree

from avatex_core.canonical import calib_for_view
from avatex_core.progress import Progress
from backend import triangles
from backend.cli import main as cli_main
from backend.errors import CancelledError, InputError
from backend.meshio import load_mesh
from backend.models import PIFu
from backend.models.checkpoint import export_official, save_checkpoint
from backend.recon import Reconstruction, reconstruct
from backend.recon.analytic import body_image
from backend.recon.framing import frame_subject
from backend.recon.mesh import signed_volume
from tests.helpers.models import HALF_THICKNESS, silhouette_pifu


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return body_image(300)  # RGBA, alpha = silhouette; framed to 450/512 by reconstruct


@pytest.fixture(scope="module")
def model(image) -> PIFu:
    return silhouette_pifu(image)


@pytest.fixture(scope="module")
def result(model, image) -> Reconstruction:
    return reconstruct(model, image, resolution=64, device="cpu")


def test_mesh_is_the_subject_in_canonical_space(result):
    v = result.vertices
    assert v.dtype == np.float32 and v.shape[1] == 3
    assert result.faces.dtype == np.int32 and result.faces.max() < len(v)
    lo, hi = v.min(0), v.max(0)
    assert hi[1] - lo[1] > 1.5 and abs(lo[1] + hi[1]) < 0.2  # ~450/512 of the box tall, centred
    assert lo[0] > -0.6 and hi[0] < 0.6  # as wide as the figure, not the box
    assert abs(lo[2] + hi[2]) < 0.05 and hi[2] < 2 * HALF_THICKNESS  # the extrusion depth
    top = v[v[:, 1] > hi[1] - 0.05]
    assert np.abs(top[:, 0]).max() < 0.15  # y up: the head is on top, centred (image rows flipped)


def test_every_vertex_is_coloured_including_the_last_below_10k_vertices(result, model):
    n = len(result.vertices)
    assert 0 < n < 10_000  # the official code leaves meshes under 10k vertices uncoloured
    c = result.colors
    assert c.shape == (n, 3) and c.dtype == np.float32
    assert np.isfinite(c).all() and c.min() >= 0 and c.max() <= 1
    pick = np.array([0, n // 2, n - 1])  # the official code leaves the last vertex black
    pts = torch.from_numpy(result.vertices[pick]).t()[None]
    calib = torch.from_numpy(calib_for_view(0.0)).float()[None]
    with torch.inference_mode():
        direct = model.query_color(pts, calib)[0].t().numpy() * 0.5 + 0.5
    assert np.allclose(c[pick], np.clip(direct, 0, 1), atol=1e-5)
    assert c.std(0).max() > 0  # really per vertex


def test_faces_wind_outward(result, model):
    assert signed_volume(result.vertices, result.faces) > 0
    tri = result.vertices[result.faces].astype(np.float64)
    n = triangles.edge_cross(tri)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    centre = tri.mean(1)
    eps = 0.25 * 2 / 64
    calib = torch.from_numpy(calib_for_view(0.0)).float()[None]
    with torch.inference_mode():
        occ = lambda p: model.query_occupancy(torch.from_numpy(p.astype(np.float32)).t()[None], calib)[0, 0]  # noqa: E731
        outward = (occ(centre + eps * n) < occ(centre - eps * n)).numpy()
    assert outward.mean() > 0.95  # occupancy drops along every face normal


def test_stats_progress_and_schedules(model, image, result):
    s = result.stats
    assert s["resolution"] == 64 and s["vertices"] == len(result.vertices) and s["faces"] == len(result.faces)
    assert s["points_evaluated"] == sum(lv["points"] for lv in s["levels"]) < s["grid_points"] == 65 ** 3
    assert set(s["seconds"]) >= {"frame", "encode", "occupancy", "marching_cubes", "color", "total"}
    stages = []
    plain = reconstruct(model, image, resolution=64, device="cpu", fast=False,
                        progress=Progress(lambda st, f, info: stages.append((st, f))))
    order = list(dict.fromkeys(st for st, _ in stages))
    assert order == ["frame", "encode", "occupancy", "mesh", "color"]
    assert all(0.0 <= f <= 1.0 for _, f in stages) and stages[-1] == ("color", 1.0)
    assert s["fast_query"]["occupancy"] and plain.stats["fast_query"] == {"occupancy": False, "color": False}
    # the pre-projected MLP and the plain one give the same mesh (up to float rounding)
    assert plain.stats["points_evaluated"] == s["points_evaluated"] and len(plain.faces) == len(result.faces)
    assert cKDTree(plain.vertices).query(result.vertices)[0].max() < 1e-3 * 2 / 64
    assert np.abs(plain.colors - result.colors).max() < 1e-3
    dense = reconstruct(model, image, resolution=16, device="cpu", schedule="dense")
    official = reconstruct(model, image, resolution=16, device="cpu", schedule="official")
    assert dense.stats["points_evaluated"] == 17 ** 3 and official.stats["points_evaluated"] == 16 ** 3
    with pytest.raises(InputError, match="schedule"):
        reconstruct(model, image, resolution=16, schedule="octree")


def test_missing_mask_and_bad_inputs_are_clear_errors(model, image):
    rgb = image[:, :, :3]
    with pytest.raises(InputError, match="a mask is needed"):
        reconstruct(model, rgb, resolution=16, device="cpu")
    opaque = image.copy()
    opaque[:, :, 3] = 255
    with pytest.raises(InputError, match="a mask is needed: the image's alpha channel is fully opaque"):
        reconstruct(model, opaque, resolution=16, device="cpu")
    with pytest.raises(InputError, match="mask is empty"):
        reconstruct(model, rgb, np.zeros(rgb.shape[:2], np.uint8), resolution=16, device="cpu")
    with pytest.raises(InputError, match="mask is 10x10 pixels but the image is 300x300"):
        reconstruct(model, rgb, np.ones((10, 10), bool), resolution=16, device="cpu")
    # an explicit mask works on an RGB image
    r = reconstruct(model, rgb, image[:, :, 3], resolution=16, device="cpu")
    assert len(r.vertices) > 0


def test_cancellation(model, image):
    with pytest.raises(CancelledError):
        reconstruct(model, image, resolution=32, device="cpu", progress=Progress(should_stop=lambda: True))


def test_framing_puts_the_subject_at_450_of_512_pixels(image):
    small = np.zeros((400, 700, 4), np.uint8)  # subject off-centre in a wide picture, touching the top
    small[0:300, 500:620] = image[0:300, 90:210]
    framed = frame_subject(small, size=512)
    rows = np.flatnonzero((framed.mask > 0.5).any(1))
    assert abs((rows[-1] - rows[0] + 1) - 450) <= 3 and abs((rows[0] + rows[-1]) / 2 - 255.5) <= 2
    img, mask = framed.network_input(), framed.mask
    assert img.shape == (1, 3, 512, 512) and mask.shape == (512, 512)
    assert np.all(img[:, :, mask == 0] == 0)  # background is 0 after normalising and masking


def test_geometry_only_model_colours_from_the_image(image, tmp_path):
    model = silhouette_pifu(image)
    g_only = PIFu(model.config, with_color=False)
    g_only.net_g.load_state_dict(model.net_g.state_dict())
    r = reconstruct(g_only, image, resolution=32, device="cpu")
    assert r.stats["color_source"] == "image" and r.colors.shape == (len(r.vertices), 3)


def test_cli_writes_ply_and_obj_with_vertex_colours(model, image, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "model.pt", model)
    Image.fromarray(image).save(tmp_path / "person.png")
    out = tmp_path / "out" / "person.ply"
    args = ["--resolution", "32", "--no-progress"]
    person = str(tmp_path / "person.png")
    assert cli_main(["reconstruct", person, "--checkpoint", str(ckpt), "--out", str(out), "--device", "cpu",
                     *args]) == 0
    printed = capsys.readouterr().out
    assert "vertices" in printed and "s on cpu" in printed
    mesh = load_mesh(out)
    assert mesh.vertex_colors is not None and len(mesh.vertex_colors) == len(mesh.vertices) > 0

    # official files + separate mask file + OBJ output
    paths = export_official(model, tmp_path / "official")
    Image.fromarray(image[:, :, :3]).save(tmp_path / "rgb.jpg")
    Image.fromarray(image[:, :, 3]).save(tmp_path / "mask.png")
    obj = tmp_path / "person.obj"
    # official files need the official sizes: with the tiny nets this must fail, naming the mismatch
    code = cli_main(["reconstruct", str(tmp_path / "rgb.jpg"), "--mask", str(tmp_path / "mask.png"),
                     "--net-g", str(paths["net_G"]), "--out", str(obj), *args])
    assert code == 2 and "does not match the model architecture" in capsys.readouterr().err
    assert cli_main(["reconstruct", str(tmp_path / "rgb.jpg"), "--mask", str(tmp_path / "mask.png"),
                     "--checkpoint", str(ckpt), "--out", str(obj), *args]) == 0
    mesh = load_mesh(obj)
    assert mesh.vertex_colors is not None and len(mesh.vertices) > 0

    code = cli_main(["reconstruct", str(tmp_path / "rgb.jpg"), "--checkpoint", str(ckpt), "--out", str(obj),
                     "--no-progress", "--overwrite", "--no-auto-mask"])   # a photo is masked by default
    assert code == 2 and "a mask is needed" in capsys.readouterr().err


@pytest.mark.slow
def test_api_doc_example_runs(tmp_path, monkeypatch):
    """docs/api.md promises a runnable example: run its first code block as written."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("/tmp/avatex_example", str(tmp_path / "avatex_example"))
    exec(compile(code, "docs/api.md", "exec"), {"__name__": "api_example"})
    assert (tmp_path / "avatex_example.ply").is_file() and (tmp_path / "avatex_example.pt").is_file()
