"""The science operations through a real server and the add-on's client, against the real code."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from avatex_core.client import BackendError, Client
from backend.meshio import load_mesh
from tests.conftest import FIXTURES
from tests.helpers.server import running_server

AVATAR = FIXTURES / "avatars" / "avatar_0000.ply"


@pytest.fixture
def root(tmp_path):
    shutil.copy(AVATAR, tmp_path / "gt.ply")
    return tmp_path


def _prediction(gt, seed=0):
    rng = np.random.default_rng(seed)
    vertices = (gt.vertices[::3] + rng.normal(0, 0.003, size=gt.vertices[::3].shape)).astype(np.float32)
    colors = np.clip(gt.vertex_colors[::3] + rng.normal(0, 0.05, size=(len(vertices), 3)), 0, 1)
    return vertices, colors.astype(np.float32)


def test_evaluate_returns_the_metric_s_own_per_vertex_values(root):
    from backend.metrics import texture_distance

    gt = load_mesh(root / "gt.ply")
    vertices, colors = _prediction(gt)
    direct = texture_distance(vertices, colors, gt, k=8, device="cpu", rng=np.random.default_rng(0))
    with running_server(roots=[root]) as server, Client(server.endpoint) as client:
        stages = []
        by_path = client.call("evaluate", {"gt": "gt.ply", "k": 8}, {"vertices": vertices, "colors": colors},
                              timeout=120, on_progress=lambda e: stages.append(e.stage))
        by_arrays = client.call("evaluate", {"k": 8},
                                {"vertices": vertices, "colors": colors, "gt_vertices": gt.vertices,
                                 "gt_faces": gt.faces.astype(np.int32), "gt_colors": gt.vertex_colors},
                                timeout=120)
    for res in (by_path, by_arrays):
        np.testing.assert_array_equal(res.arrays["patd"], direct.patd)
        np.testing.assert_array_equal(res.arrays["pipatd"], direct.pipatd)
        np.testing.assert_array_equal(res.arrays["nearest"], direct.nearest)
        assert res.arrays["patd"].dtype == np.float32 and res.arrays["nearest"].dtype == np.int64
        assert res.result["patd"]["mean"] == pytest.approx(direct.summary()["patd"]["mean"], rel=1e-12)
        assert res.result["k"] == 8 and res.result["gt_kind"] == "vertices"
        assert res.result["pipatd"]["mean"] <= res.result["patd"]["mean"]
    assert stages[0] == "queued" and "nearest" in stages


def test_evaluate_accepts_uint8_colours(root):
    gt = load_mesh(root / "gt.ply")
    vertices, colors = _prediction(gt, seed=1)
    as_bytes = np.round(colors * 255).astype(np.uint8)
    with running_server(roots=[root]) as server, Client(server.endpoint) as client:
        res8 = client.call("evaluate", {"gt": "gt.ply"}, {"vertices": vertices, "colors": as_bytes},
                           timeout=120)
        resf = client.call("evaluate", {"gt": "gt.ply"},
                           {"vertices": vertices, "colors": as_bytes.astype(np.float32) / 255}, timeout=120)
    np.testing.assert_allclose(res8.arrays["patd"], resf.arrays["patd"], atol=1e-4)


@pytest.mark.parametrize(("args", "arrays", "words"), [
    ({"gt": "gt.ply"}, {"vertices": np.zeros((5, 3), np.float32), "colors": np.zeros((4, 3), np.float32)},
     "5 vertices but 4 colours"),
    ({}, {"vertices": np.zeros((5, 3), np.float32), "colors": np.zeros((5, 3), np.float32)},
     "not both or neither"),
    ({"gt": "gt.ply"}, {"vertices": np.zeros((5, 3), np.float32), "colors": np.zeros((5, 3), np.float32),
                        "gt_vertices": np.zeros((5, 3), np.float32)}, "not both or neither"),
    ({}, {"vertices": np.zeros((5, 3), np.float32), "colors": np.zeros((5, 3), np.float32),
          "gt_vertices": np.zeros((5, 3), np.float32)}, "needs gt_colors"),
    ({}, {"vertices": np.zeros((5, 3), np.float32), "colors": np.zeros((5, 3), np.float32),
          "gt_vertices": np.zeros((5, 3), np.float32), "gt_colors": np.zeros((5, 3), np.float32),
          "gt_faces": np.array([[0, 1, 9]], np.int32)}, "do not exist"),
    ({"gt": "missing.ply"},
     {"vertices": np.zeros((5, 3), np.float32), "colors": np.zeros((5, 3), np.float32)}, "does not exist"),
    ({"gt": "gt.ply", "k": 0}, {"vertices": np.zeros((5, 3), np.float32),
                                "colors": np.zeros((5, 3), np.float32)}, "'k'"),
])
def test_evaluate_refuses_inconsistent_inputs_before_running(root, args, arrays, words):
    with running_server(roots=[root]) as server, Client(server.endpoint) as client:
        with pytest.raises(BackendError) as info:
            client.call("evaluate", args, arrays, timeout=60)
        assert words in info.value.message
        assert server.jobs.counts() == {}   # refused up front: no job was queued


def test_train_start_checks_its_config_up_front(tmp_path):
    (tmp_path / "data").mkdir()
    with running_server(roots=[tmp_path]) as server, Client(server.endpoint) as client:
        cases = [({"config": {"data": "data"}}, "bad_input", "config['out']"),
                 ({"config": {"data": "data", "out": "run", "device": "cuda"}}, "bad_input", "device"),
                 ({"config": {"data": "../x", "out": "run"}}, "bad_path", "'..'"),
                 ({"config": {"data": "data", "out": "/tmp/elsewhere"}}, "bad_path", "outside"),
                 ({"config": {"data": "data", "out": "run", "cache_dir": "/var/tmp"}}, "bad_path", "outside"),
                 ({"config": {"data": "data", "out": "run"}, "resume": "j123"}, "bad_input", "either"),
                 ({"resume": "jnothing"}, "not_found", "no job"),
                 ({}, "bad_input", "'config' is required")]
        for args, code, words in cases:
            if server.operations["train.start"].missing():
                pytest.skip("backend.train is not installed")
            with pytest.raises(BackendError) as info:
                client.call("train.start", args, timeout=30)
            assert info.value.code == code and words in info.value.message, (args, info.value)
        assert server.jobs.counts() == {}


def _silhouette(size: int = 256) -> np.ndarray:
    """An RGBA image of a person-shaped blob (alpha = mask), enough for a real network to run on."""
    yy, xx = np.mgrid[:size, :size]
    body = ((xx - size / 2) / (0.16 * size)) ** 2 + ((yy - size / 2) / (0.4 * size)) ** 2 < 1
    head = (xx - size / 2) ** 2 + (yy - 0.12 * size) ** 2 < (0.07 * size) ** 2
    img = np.zeros((size, size, 4), np.uint8)
    img[..., :3] = (40 + 180 * xx / size)[..., None].astype(np.uint8)
    img[..., 3] = 255 * (body | head)
    return img


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from backend.models import ModelConfig, PIFu
    from backend.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models")
    save_checkpoint(folder / "small.pt", PIFu(ModelConfig.small()))
    return folder


def test_reconstruct_then_evaluate_through_the_server_match_the_direct_calls(small_checkpoint):
    """The foundation's thin path, network part: the add-on's client drives reconstruct and evaluate."""
    from PIL import Image

    from backend.metrics import texture_distance
    from backend.models.checkpoint import load_models
    from backend.recon import reconstruct

    root = small_checkpoint
    shutil.copy(AVATAR, root / "gt.ply")
    image = _silhouette()
    Image.fromarray(image).save(root / "person.png")
    direct = reconstruct(load_models(checkpoint=root / "small.pt", device="cpu"), image, resolution=32,
                         device="cpu")
    with running_server(roots=[root], devices=["cpu"]) as server, Client(server.endpoint) as client:
        stages = []
        rec = client.call("reconstruct", {"checkpoint": "small.pt", "resolution": 32, "out": "out/rec.ply"},
                          {"image": image}, timeout=300, on_progress=lambda e: stages.append(e.stage))
        by_path = client.call("reconstruct", {"checkpoint": "small.pt", "resolution": 32,
                                              "image": "person.png"}, timeout=300)
        for res in (rec, by_path):
            assert res.arrays["vertices"].dtype == np.float32 and res.arrays["faces"].dtype == np.int32
            np.testing.assert_allclose(res.arrays["vertices"], direct.vertices, atol=1e-5)
            np.testing.assert_array_equal(res.arrays["faces"], direct.faces)
            np.testing.assert_allclose(res.arrays["colors"], direct.colors, atol=1e-5)
        assert rec.result["vertices"] == len(direct.vertices) and rec.result["stats"]["resolution"] == 32
        assert {"queued", "encode", "occupancy", "color"} <= set(stages)
        saved = load_mesh(root / "out" / "rec.ply")
        assert len(saved.vertices) == len(direct.vertices) and rec.result["saved"].endswith("rec.ply")

        audit = client.call("evaluate", {"gt": "gt.ply"},
                            {"vertices": rec.arrays["vertices"], "colors": rec.arrays["colors"]}, timeout=300)
    expected = texture_distance(direct.vertices, direct.colors, load_mesh(root / "gt.ply"), k=8, device="cpu",
                                rng=np.random.default_rng(0))
    np.testing.assert_allclose(audit.arrays["patd"], expected.patd, atol=1e-4)
    np.testing.assert_allclose(audit.arrays["pipatd"], expected.pipatd, atol=1e-4)
    assert len(audit.arrays["patd"]) == len(rec.arrays["vertices"])


def test_reconstruct_can_be_cancelled_and_refuses_bad_requests(small_checkpoint):
    root = small_checkpoint
    with running_server(roots=[root], devices=["cpu"]) as server, Client(server.endpoint) as client:
        rid = client.submit("reconstruct", {"checkpoint": "small.pt", "resolution": 128},
                            {"image": _silhouette()})
        deadline = time.monotonic() + 120
        final = None
        while final is None and time.monotonic() < deadline:
            for event in client.poll(0.05):
                if event.id != rid:
                    continue
                if event.stage in ("encode", "occupancy"):
                    client.cancel(rid)
                if event.final:
                    final = event
        assert final is not None and final.type == "cancelled"
        for args, arrays, words in [
            ({"checkpoint": "small.pt"}, {}, "not both or neither"),
            ({"checkpoint": "small.pt", "image": "x.png"}, {"image": _silhouette()}, "not both or neither"),
            ({"checkpoint": "small.pt", "net_g": "small.pt"}, {"image": _silhouette()}, "not both"),
            ({"net_c": "small.pt"}, {"image": _silhouette()}, "needs 'net_g'"),
            ({"checkpoint": "small.pt", "out": "x.stl"}, {"image": _silhouette()}, ".ply or .obj"),
            ({"checkpoint": "small.pt"}, {"image": _silhouette(), "mask": np.zeros((5, 5), np.uint8)},
             "differ in size"),
            ({"checkpoint": "small.pt"}, {"image": np.zeros((8, 8, 2), np.uint8)}, "uint8 (N, N, 3|4)"),
        ]:
            with pytest.raises(BackendError) as info:
                client.call("reconstruct", args, arrays, timeout=60)
            assert words in info.value.message, (args, info.value)
