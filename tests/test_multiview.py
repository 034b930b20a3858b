"""PIFu's multi-view mode: views fused inside the MLPs, the calibrated-view pipeline, calib checks, the CLI.

The single-view network must not change by a bit: one view goes through the very operations it always
did (checked here against the official single-view formula with ``torch.equal``, and the calibrated
pipeline with one view against the single-image pipeline array for array).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avatex_core import canonical
from backend.errors import InputError
from backend.models import PIFu
from backend.models.blocks import index, orthogonal
from backend.models.surface_classifier import SurfaceClassifier
from backend.recon import View, reconstruct, reconstruct_views
from backend.recon.framing import frame_subject
from backend.recon.pipeline import check_calib
from tests.helpers.models import silhouette_pifu
from tests.helpers.tiny_models import tiny_config

OFFICIAL_G = (257, 1024, 512, 256, 128, 1)


def unit_mlp(dims: tuple[int, ...], seed: int = 0) -> SurfaceClassifier:
    """An MLP with unit-variance layers, so that comparisons are not trivially saturated."""
    torch.manual_seed(seed)
    mlp = SurfaceClassifier(dims, True, torch.nn.Sigmoid() if dims[-1] == 1 else torch.nn.Tanh())
    for m in mlp.modules():
        if isinstance(m, torch.nn.Conv1d):
            torch.nn.init.normal_(m.weight, 0.0, (2.0 / m.weight.shape[1]) ** 0.5)
            torch.nn.init.normal_(m.bias, 0.0, 0.1)
    return mlp.eval()


def official_forward(mlp: SurfaceClassifier, feature: torch.Tensor, num_views: int) -> torch.Tensor:
    """The official ``SurfaceClassifier.forward`` written out: skip-concat of the input, LeakyReLU, and
    with several views the mean over each subject's views after layer ``len(filters) // 2``."""
    y, skip = feature, feature
    layers = mlp.num_layers
    for i in range(layers):
        conv = mlp._modules[f"conv{i}"]
        y = conv(y if i == 0 else torch.cat([y, skip], 1))
        if i != layers - 1:
            y = F.leaky_relu(y)
        if num_views > 1 and i == layers // 2:
            y = y.view(-1, num_views, y.shape[1], y.shape[2]).mean(dim=1)
            skip = feature.view(-1, num_views, feature.shape[1], feature.shape[2]).mean(dim=1)
    return mlp.last_op(y)


def yaw_calibs(*yaws: float) -> torch.Tensor:
    return torch.from_numpy(np.stack([canonical.calib_for_view(y) for y in yaws])).float()


def encoded_pifu(views: int = 1, seed: int = 0) -> tuple[PIFu, torch.Tensor]:
    """A tiny PIFu (random weights) and ``views`` distinct random masked images of one subject."""
    torch.manual_seed(seed)
    model = PIFu(tiny_config()).eval()
    s = model.config.load_size
    g = torch.Generator().manual_seed(seed + 1)
    img = torch.rand(views, 3, s, s, generator=g) * 2 - 1
    img[:, :, :, : s // 4] = 0.0
    return model, img


# -- the MLP -------------------------------------------------------------------------------------------

def test_one_view_is_the_official_single_view_formula_bit_for_bit():
    mlp = unit_mlp(OFFICIAL_G)
    x = torch.randn(2, OFFICIAL_G[0], 500)
    with torch.no_grad():
        reference = official_forward(mlp, x, 1)
        assert torch.equal(mlp(x), reference)
        assert torch.equal(mlp(x, num_views=1), reference)


@pytest.mark.slow
@pytest.mark.parametrize("dims", [OFFICIAL_G, (513, 1024, 512, 256, 128, 3), (33, 32, 16, 1)])
def test_views_are_averaged_where_the_official_code_averages_them(dims):
    """Two subjects of three views each: the plain path is the official formula, and the pre-projected
    fast path (per-view sampling, averaged hidden activations and later-layer input terms) equals it."""
    mlp = unit_mlp(dims)
    feat = torch.randn(6, dims[0] - 1, 12, 10)
    uv = torch.rand(6, 2, 300) * 2.3 - 1.15
    z = torch.randn(6, 1, 300)
    x = torch.cat([index(feat, uv), z], 1)
    with torch.no_grad():
        plain = mlp(x, num_views=3)
        assert plain.shape == (2, dims[-1], 300)
        assert torch.equal(plain, official_forward(mlp, x, 3))
        fast = mlp.forward_projected(mlp.project(feat), uv, z, num_views=3)
        assert plain.std() > 0.02
        assert torch.allclose(fast, plain, atol=2e-5, rtol=1e-4)
        # Fusing elsewhere (here: not at all, then averaging the outputs) is a different function.
        late = mlp(x).view(2, 3, dims[-1], 300).mean(1)
        assert (late - plain).abs().max() > 1e-3


# -- the nets ------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("fast", [False, True])
def test_the_same_view_repeated_equals_the_single_view(fast):
    model, img = encoded_pifu(1)
    pts = torch.rand(1, 3, 1000) * 2.2 - 1.1
    one = yaw_calibs(0.0)
    with torch.inference_mode():
        model.encode(img)
        single = (model.query_occupancy(pts, one, fast=fast), model.query_color(pts, one, fast=fast))
        for views in (2, 3):
            model.encode(img.expand(views, -1, -1, -1).contiguous())
            calibs = one.expand(views, 4, 4).contiguous()
            occ = model.query_occupancy(pts, calibs, fast=fast)
            col = model.query_color(pts, calibs, fast=fast)
            assert occ.shape == (1, 1, 1000) and col.shape == (1, 3, 1000)
            assert torch.allclose(occ, single[0], atol=1e-6) and torch.allclose(col, single[1], atol=1e-6)


@pytest.mark.slow
def test_two_views_differ_from_each_single_view_and_are_finite():
    model, img = encoded_pifu(2)
    pts = torch.rand(1, 3, 2000) * 1.4 - 0.7
    calibs = yaw_calibs(0.0, 90.0)
    with torch.inference_mode():
        model.encode(img)
        both = model.query_occupancy(pts, calibs)
        both_c = model.query_color(pts, calibs)
        assert torch.allclose(model.query_occupancy(pts, calibs, fast=True), both, atol=1e-5)
        singles = []
        for k in range(2):
            model.encode(img[k:k + 1])
            singles.append(model.query_occupancy(pts, calibs[k:k + 1]))
    assert torch.isfinite(both).all() and torch.isfinite(both_c).all()
    assert both.min() >= 0 and both.max() <= 1 and both_c.abs().max() <= 1
    for single in singles:
        assert (both - single).abs().max() > 1e-4


def test_a_point_outside_any_view_is_empty():
    """The in-image mask of several views: a point must project inside every view's image."""
    model, img = encoded_pifu(2)
    pts = torch.tensor([[[0.0, 0.95, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.95]]])  # x, y, z rows
    pts = torch.cat([pts, torch.tensor([[[0.0], [0.0], [0.0]]])], 2)
    pts[0, 0, 0], pts[0, 2, 0] = 0.9, 0.9    # point 0: inside view 0, outside view 45° (|x'| > 1)
    with torch.inference_mode():
        model.encode(img)
        occ = model.query_occupancy(pts, yaw_calibs(0.0, 45.0))
        xy = orthogonal(pts.expand(2, -1, -1), yaw_calibs(0.0, 45.0))[:, :2]
    assert xy[0, :, 0].abs().max() <= 1 and xy[1, :, 0].abs().max() > 1
    assert occ[0, 0, 0] == 0 and (occ[0, 0, 1:] > 0).all()


def test_calibs_that_do_not_match_the_encoded_views_are_one_line_errors():
    model, img = encoded_pifu(2)
    pts = torch.zeros(1, 3, 10)
    with torch.inference_mode():
        model.encode(img)
        with pytest.raises(InputError, match="3 calibs for 2 encoded images") as exc:
            model.query_occupancy(pts, yaw_calibs(0.0, 90.0, 180.0))
        with pytest.raises(InputError, match=r"\[B\*V, 4, 4\]"):
            model.query_occupancy(torch.zeros(2, 3, 10), yaw_calibs(0.0, 90.0, 180.0))
    assert "\n" not in str(exc.value)


# -- the pipeline --------------------------------------------------------------------------------------

def body_rgba(size: int = 160) -> np.ndarray:
    """A standing body-shaped cut-out with a colour gradient (uint8 RGBA)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    torso = (np.abs(xx - 0.5) < 0.12) & (yy > 0.08) & (yy < 0.92)
    alpha = torso | (((xx - 0.5) ** 2 + (yy - 0.15) ** 2) < 0.01)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = (255 * xx).astype(np.uint8)
    rgba[..., 1] = (255 * yy).astype(np.uint8)
    rgba[..., 2] = 128
    rgba[..., 3] = alpha * 255
    return rgba


@pytest.mark.slow
def test_one_calibrated_view_reproduces_the_single_image_pipeline_exactly():
    image = body_rgba()
    model = silhouette_pifu(image)
    single = reconstruct(model, image, resolution=32, device="cpu")
    framed = frame_subject(image, size=model.config.load_size)
    view = View(np.dstack([framed.rgb, framed.mask]), canonical.calib_for_view(0.0))
    calibrated = reconstruct_views(model, [view], resolution=32, device="cpu")
    assert len(single.vertices) > 100
    for a, b in ((single.vertices, calibrated.vertices), (single.faces, calibrated.faces),
                 (single.colors, calibrated.colors)):
        assert np.array_equal(a, b)
    assert calibrated.stats["views"] == 1
    assert calibrated.stats["points_evaluated"] == single.stats["points_evaluated"]


@pytest.mark.slow
def test_two_calibrated_views_reconstruct_a_different_finite_mesh():
    image = body_rgba()
    model = silhouette_pifu(image)
    framed = frame_subject(image, size=model.config.load_size)
    front = np.dstack([framed.rgb, framed.mask])
    side = front.copy()
    side[..., 3] = np.roll(framed.mask, 6, axis=1)   # another silhouette for the 90° view
    yaw0, yaw90 = canonical.calib_for_view(0.0), canonical.calib_for_view(90.0)
    one = reconstruct_views(model, [(front, None, yaw0)], resolution=32, device="cpu")
    two = reconstruct_views(model, [(front, None, yaw0), (side, None, yaw90)], resolution=32, device="cpu")
    assert two.stats["views"] == 2 and len(two.vertices) > 100
    assert np.isfinite(two.vertices).all() and np.isfinite(two.colors).all()
    assert len(two.vertices) != len(one.vertices) or not np.allclose(two.vertices, one.vertices)


@pytest.mark.parametrize("calib, message", [
    (np.eye(3), r"calib must be a 4 x 4 matrix, got shape \[3, 3\]"),
    (np.full((4, 4), np.nan), "non-finite"),
    (np.array([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]), "last row must be 0 0 0 1"),
    (np.diag([1.0, 0.0, 1.0, 1.0]), "singular"),
    ("not a matrix", "4 x 4 matrix"),
])
def test_bad_calibs_are_one_line_errors_naming_the_view(calib, message):
    image = body_rgba(64)
    with pytest.raises(InputError, match=message) as exc:
        reconstruct_views(PIFu(tiny_config()), [View(image, canonical.calib_for_view(0.0)),
                                                   View(image, calib)], resolution=16, device="cpu")
    assert str(exc.value).startswith("view 1: ") and "\n" not in str(exc.value)


def test_bad_views_are_one_line_errors():
    model = PIFu(tiny_config())
    with pytest.raises(InputError, match="non-empty list"):
        reconstruct_views(model, [], resolution=16)
    with pytest.raises(InputError, match=r"view 0 must be a View or an \(image, mask, calib\) tuple"):
        reconstruct_views(model, [(body_rgba(64), canonical.calib_for_view(0.0))], resolution=16)
    empty = body_rgba(64)
    empty[..., 3] = 0
    with pytest.raises(InputError, match="view 1: the mask is empty"):
        reconstruct_views(model, [View(body_rgba(64), canonical.calib_for_view(0.0)),
                                  View(empty, canonical.calib_for_view(90.0))], resolution=16)
    assert check_calib(canonical.calib_for_view(90.0)).dtype == np.float32


# -- the CLI -------------------------------------------------------------------------------------------

def test_cli_calib_files_and_their_errors(tmp_path, capsys):
    from backend.cli import main as cli_main
    from backend.cli.multiview import read_calib

    calib = canonical.calib_for_view(90.0)
    np.save(tmp_path / "c.npy", calib)
    (tmp_path / "c.json").write_text(json.dumps({"calib": calib.tolist()}))
    np.savetxt(tmp_path / "c.txt", calib)
    for name in ("c.npy", "c.json", "c.txt"):
        assert np.allclose(read_calib(tmp_path / name), calib, atol=1e-7)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    out = tmp_path / "out.ply"
    cases = [
        (["a.png", "b.png"], "2 images given without calibs"),
        (["a.png", "b.png", "--calibs", str(tmp_path / "c.npy")], "2 image(s) but 1 --calibs file(s)"),
        (["--dataset", str(tmp_path)], "--dataset needs --subject S and --views"),
        (["--subject", "s"], "--subject needs --dataset"),
        (["a.png", "--calibs", str(tmp_path / "obj.npy")], "cannot read calib obj.npy"),
        (["a.png", "--calibs", str(tmp_path / "bad.txt")], "calib bad.txt: the calib must be a 4 x 4 matrix"),
        (["--dataset", str(tmp_path), "--subject", "s", "--views", "0,x"], "--views must be comma-separated"),
    ]
    for argv, message in cases:
        code = cli_main(["reconstruct", *argv, "--checkpoint", str(tmp_path / "none.pt"), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
        assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.fixture(scope="module")
def valid_views(tmp_path_factory):
    """A held-out clothed avatar rendered at four yaws (0, 90, 180, 270 degrees), small and quick."""
    from tests.conftest import FIXTURES
    from tests.helpers.render import render

    out = tmp_path_factory.mktemp("valid") / "data"
    mesh = FIXTURES / "valid" / "White_M_1_Casual" / "White_M_1_Casual.obj"
    code, _, err = render(["--meshes", mesh, "--out", out, "--views", "4", "--step", "90", "--levels",
                           "clear", "--resolution", "128", "--samples", "2", "--albedo-samples", "1",
                           "--no-denoise", "--test-fraction", "1.0"])   # held out: the test split
    assert code == 0, err[-2000:]
    return out


@pytest.mark.slow
def test_cli_reconstructs_from_dataset_views_in_the_subjects_space(valid_views, tmp_path, capsys):
    """End to end: --dataset --subject --views with the demo checkpoint; the mesh lies on the GT (same
    canonical space, nothing aligned), and the same views given as image + calib files give the same
    mesh."""
    from backend.cli import main as cli_main
    from backend.data.dataset import Dataset
    from backend.meshio import load_mesh
    from backend.metrics.geometry import geometry_metrics
    from tests.conftest import ROOT

    ckpt = ROOT / "backend" / "assets" / "pifu_small.pt"
    common = ["--checkpoint", str(ckpt), "--resolution", "64", "--no-progress"]
    out = tmp_path / "two.ply"
    code = cli_main(["reconstruct", "--dataset", str(valid_views), "--subject", "White_M_1_Casual",
                     "--views", "0,2", "--out", str(out), *common])
    assert code == 0, capsys.readouterr().err
    assert "from 2 view(s)" in capsys.readouterr().out
    data = Dataset(valid_views)
    gt = data.gt_mesh("White_M_1_Casual")
    mesh = load_mesh(out)
    geo = geometry_metrics(mesh.vertices, mesh.faces, gt.vertices, gt.faces, samples=20_000,
                           rng=np.random.default_rng(0))
    assert geo.chamfer < 0.1   # canonical units; the subject is 1.76 tall
    files = []
    for k in (0, 2):
        view = data.view_dir("White_M_1_Casual", k)
        files += [view / "clear.png", view / "view.json"]
    again = tmp_path / "files.ply"
    code = cli_main(["reconstruct", str(files[0]), str(files[2]), "--calibs", str(files[1]), str(files[3]),
                     "--out", str(again), *common])
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(load_mesh(again).vertices, mesh.vertices)
    for views, message in (("0,7", "view(s) 7 are not rendered"), ("0,0", "names a view twice")):
        code = cli_main(["reconstruct", "--dataset", str(valid_views), "--subject", "White_M_1_Casual",
                         "--views", views, "--out", str(tmp_path / "bad.ply"), *common])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    code = cli_main(["reconstruct", "--dataset", str(valid_views), "--subject", "nobody", "--views", "0",
                     "--out", str(tmp_path / "bad.ply"), *common])
    assert code == 2 and "subject 'nobody' is not in" in capsys.readouterr().err


# -- training ------------------------------------------------------------------------------------------

def test_training_views_are_spread_around_the_subject_as_officially():
    from backend.train.data import spread_views

    assert spread_views(range(8), 0, 1) == [0]
    assert spread_views(range(8), 2, 4) == [2, 4, 6, 0]
    assert spread_views([0, 3, 5], 5, 3) == [5, 0, 3]
    with pytest.raises(InputError, match="num_views = 4 but subject s has 3 rendered view"):
        spread_views([0, 1, 2], 0, 4, "s")


@pytest.mark.slow
def test_a_multiview_training_step_equals_single_view_on_repeated_views_and_trains():
    from backend.train.loop import Objective, configure_trainable
    from tests.helpers.models import train_config, training_batch

    torch.manual_seed(0)
    model = PIFu(tiny_config())
    cfg = train_config(stage="both", loss="ssim", num_views=2)
    configure_trainable(model, cfg)
    model.train()
    single = training_batch()
    double = dict(single, image=single["image"][:, None].expand(-1, 2, -1, -1, -1),
                  calib=single["calib"][:, None].expand(-1, 2, -1, -1))
    objective = Objective(model, cfg)
    ref = objective(single)
    out = objective(double)
    for key in ("occupancy", "color", "loss"):
        assert torch.allclose(out[key], ref[key], atol=1e-5), key
    different = dict(double, image=torch.stack([single["image"], single["image"].flip(-1)], 1))
    moved = objective(different)
    assert torch.isfinite(moved["loss"]) and abs(float(moved["loss"].detach() - ref["loss"].detach())) > 1e-6
    moved["loss"].backward()
    mlp = model.net_g.surface_classifier
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mlp.parameters())
    with pytest.raises(InputError, match="num_views must be a positive integer"):
        train_config(num_views=0).validate()


@pytest.mark.slow
def test_the_data_loader_gives_each_item_its_spread_views(valid_views, tmp_path):
    from backend.train.data import TrainItems, train_items
    from backend.train.source import open_source
    from tests.helpers.models import train_config

    cfg = train_config(data=str(valid_views), stage="color", loss="l1", num_views=2, points_color=64,
                       dense_samples=2000)
    items = train_items(open_source(cfg.data), None, split="test")
    data = TrainItems(cfg, items, 64, tmp_path / "cache")
    sample = data[0]
    sid, view, _ = data.item_of(0)
    assert sample["image"].shape == (2, 3, 64, 64) and sample["mask"].shape == (2, 1, 64, 64)
    source = open_source(cfg.data)
    expected = [source.calib(sid, view), source.calib(sid, (view + 2) % 4)]
    assert np.allclose(sample["calib"].numpy(), np.stack(expected), atol=1e-6)
    assert sample["color_points"].shape == (3, 64)


# -- the server ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_server_reconstructs_from_views_and_calibs_and_refuses_bad_ones(tmp_path):
    """Real server, real socket: the 'views' + 'calibs' arrays give the direct reconstruct_views mesh;
    a mismatch is one line naming the problem and the server keeps serving."""
    from avatex_core.client import BackendError, Client
    from backend.models.checkpoint import load_models, save_checkpoint
    from tests.helpers.server import running_server

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "tiny.pt", PIFu(tiny_config()))
    image = body_rgba(96)
    views = np.stack([image, np.roll(image, 4, axis=1)])
    calibs = yaw_calibs(0.0, 90.0).numpy()
    model = load_models(checkpoint=tmp_path / "tiny.pt", device="cpu")
    direct = reconstruct_views(model, [View(views[0], calibs[0]), View(views[1], calibs[1])], resolution=24,
                               device="cpu")
    with running_server(roots=[tmp_path], devices=["cpu"]) as server, Client(server.endpoint) as client:
        res = client.call("reconstruct", {"checkpoint": "tiny.pt", "resolution": 24},
                          {"views": views, "calibs": calibs}, timeout=300)
        np.testing.assert_allclose(res.arrays["vertices"], direct.vertices, atol=1e-5)
        np.testing.assert_array_equal(res.arrays["faces"], direct.faces)
        assert res.result["stats"]["views"] == 2
        bad_calib = calibs.copy()
        bad_calib[1, 3] = (0, 0, 1, 1)
        for args, arrays, words in [
            ({}, {"views": views, "calibs": calibs[:1]}, "2 views need 2 calibs"),
            ({}, {"views": views}, "2 views need 2 calibs"),
            ({}, {"calibs": calibs}, "go with the 'views' array"),
            ({}, {"views": views, "calibs": calibs, "image": image}, "not both"),
            ({"texture": 512}, {"views": views, "calibs": calibs}, "'texture' bakes from one image"),
            ({}, {"views": views, "calibs": bad_calib}, "view 1: the calib's last row must be 0 0 0 1"),
            ({}, {"views": views, "calibs": calibs, "masks": np.ones((2, 5, 5), np.uint8)}, "differ in size"),
            ({}, {"views": np.zeros((17, 4, 4, 4), np.uint8), "calibs": np.zeros((17, 4, 4), np.float32)},
             "send between 1 and 16"),
        ]:
            with pytest.raises(BackendError) as info:
                client.call("reconstruct", {"checkpoint": "tiny.pt", "resolution": 24, **args}, arrays,
                            timeout=60)
            assert words in info.value.message and "\n" not in info.value.message, (words, info.value)
        assert client.call("ping", {}).result["time"] > 0
