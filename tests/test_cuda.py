"""The CUDA paths, run on a GPU: device selection, reconstruction, AMP steps, the torch CIEDE2000 and
k-NN engine, the training loop with AMP, DDP over NCCL, Cycles on the GPU.

Every test here carries the ``cuda`` marker; tests/conftest.py skips them where torch sees no GPU, and
benchmarks/gpu_check.py runs exactly them on a GPU machine. Each compares the GPU result with the CPU
result of the same code (or the numpy reference), so a wrong device placement or a dtype slip fails.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from backend.meshio import ColoredMesh
from backend.metrics import knn, texture_distance
from backend.metrics.color import ciede2000, ciede2000_torch, srgb_to_lab, srgb_to_lab_torch
from backend.models import PIFu
from backend.models.checkpoint import load_checkpoint
from backend.models.device import resolve_device
from backend.recon import reconstruct
from backend.recon.analytic import body_image
from backend.train.loop import Objective, configure_trainable, make_optimizers
from tests.helpers.models import silhouette_pifu, train_config, training_batch
from tests.helpers.sharma import EXPECTED, LAB1, LAB2
from tests.helpers.tiny_models import TINY, tiny_config

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[1]
AVATARS = ROOT / "tests" / "fixtures" / "avatars"
SMALL_CHECKPOINT = ROOT / "backend" / "assets" / "pifu_small.pt"
HAS_BPY = importlib.util.find_spec("bpy") is not None


def test_device_selection_defaults_to_cuda_and_models_land_there():
    assert resolve_device(None) == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    model, _ = load_checkpoint(SMALL_CHECKPOINT)  # device=None: CUDA when available
    assert model.device.type == "cuda"
    assert all(p.device.type == "cuda" for p in model.parameters())


def test_reconstruction_on_cuda_matches_the_cpu():
    image = body_image(300)
    model = silhouette_pifu(image)
    cpu = reconstruct(copy.deepcopy(model), image, resolution=64, device="cpu")
    gpu = reconstruct(model, image, resolution=64, device="cuda")
    assert gpu.stats["device"].startswith("cuda") and cpu.stats["device"] == "cpu"
    assert abs(len(gpu.vertices) - len(cpu.vertices)) <= 0.01 * len(cpu.vertices)
    voxel = 2.0 / 64
    dist, idx = cKDTree(cpu.vertices).query(gpu.vertices)
    assert dist.mean() < 0.05 * voxel and dist.max() < voxel, (dist.mean() / voxel, dist.max() / voxel)
    # Colours at matching vertices: the same net on the same features, up to float rounding (cuDNN may
    # use TF32 convolutions, so "rounding" is ~1e-3 here).
    close = dist < 0.02 * voxel
    assert close.mean() > 0.9
    assert np.abs(gpu.colors[close] - cpu.colors[idx[close]]).max() < 1e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_amp_colour_step_on_cuda_agrees_with_fp32_and_trains(dtype):
    cfg = train_config(stage="color", loss="l1+ssim")
    torch.manual_seed(0)
    ref = PIFu(tiny_config()).cuda()
    model = copy.deepcopy(ref)
    batch = {k: v.cuda() for k, v in training_batch(b=4, m=8, n=200).items()}
    losses = {}
    for name, m in (("fp32", ref), ("amp", model)):
        configure_trainable(m, cfg)
        m.train()
        objective, optimizers = Objective(m, cfg), make_optimizers(m, cfg)
        # The training loop's recipe: autocast forward, a GradScaler for float16 (inactive for bf16).
        scaler = torch.amp.GradScaler("cuda", enabled=name == "amp" and dtype == torch.float16)
        with torch.autocast("cuda", dtype=dtype, enabled=name == "amp"):
            out = objective(batch)
        scaler.scale(out["loss"]).backward()
        for opt in optimizers.values():
            scaler.step(opt)
        scaler.update()
        losses[name] = float(out["loss"].detach())
    assert np.isfinite(losses["amp"])
    assert losses["amp"] == pytest.approx(losses["fp32"], rel=0.03), losses
    moved = [(a - b).abs().max().item() for a, b in zip(model.net_c.parameters(), ref.net_c.parameters(),
                                                         strict=True)]
    assert max(moved) < 5e-3  # both took one Adam step of lr 1e-3 from the same weights
    assert all(torch.equal(a, b) for a, b in zip(model.net_g.parameters(), ref.net_g.parameters(),
                                                 strict=True))


def test_ciede2000_torch_on_cuda_equals_numpy():
    got = ciede2000_torch(torch.tensor(LAB1, device="cuda"), torch.tensor(LAB2, device="cuda"))
    assert got.device.type == "cuda"
    np.testing.assert_allclose(got.cpu().numpy(), EXPECTED, atol=1e-4)  # Sharma's published values
    rng = np.random.default_rng(0)
    rgb1, rgb2 = rng.random((200_000, 3)), rng.random((200_000, 3))
    lab1, lab2 = srgb_to_lab(rgb1), srgb_to_lab(rgb2)
    lab1_t = srgb_to_lab_torch(torch.tensor(rgb1, device="cuda"))
    np.testing.assert_allclose(lab1_t.cpu().numpy(), lab1, atol=1e-9)
    de = ciede2000_torch(lab1_t, srgb_to_lab_torch(torch.tensor(rgb2, device="cuda"))).cpu().numpy()
    np.testing.assert_allclose(de, ciede2000(lab1, lab2), atol=1e-9)


def _cloud(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((n, 3))
    return p / np.linalg.norm(p, axis=1, keepdims=True) * np.array([0.45, 0.9, 0.3])


def test_knn_torch_on_cuda_equals_the_kd_tree():
    ref, query = _cloud(60_000, 1), _cloud(50_000, 2)
    d_cpu, i_cpu = knn.knn_cpu(ref, query, 8)
    d_gpu, i_gpu = knn.knn_torch(torch.tensor(ref, device="cuda"), torch.tensor(query, device="cuda"), 8)
    assert i_gpu.device.type == "cuda"
    np.testing.assert_array_equal(i_gpu.cpu().numpy(), i_cpu)
    np.testing.assert_allclose(d_gpu.cpu().numpy(), d_cpu, atol=1e-12)


def test_texture_distance_defaults_to_the_torch_engine_on_cuda_and_equals_numpy():
    rng = np.random.default_rng(3)
    gt_v = _cloud(80_000, 4)
    gt = ColoredMesh(vertices=gt_v, faces=np.zeros((0, 3), np.int64),
                     vertex_colors=rng.random((len(gt_v), 3)).astype(np.float32))
    pred_v, pred_c = _cloud(60_000, 5), rng.random((60_000, 3))
    gpu = texture_distance(pred_v, pred_c, gt)  # device None, engine auto: torch on CUDA
    cpu = texture_distance(pred_v, pred_c, gt, device="cpu", engine="numpy")
    assert (gpu.engine, gpu.device, cpu.engine) == ("torch", "cuda", "numpy")
    np.testing.assert_array_equal(gpu.nearest, cpu.nearest)
    np.testing.assert_allclose(gpu.patd, cpu.patd, atol=1e-5)
    np.testing.assert_allclose(gpu.pipatd, cpu.pipatd, atol=1e-5)
    assert gpu.summary()["patd"]["mean"] == pytest.approx(cpu.summary()["patd"]["mean"], abs=1e-9)


# -- with a rendered dataset (the bpy wheel) ----------------------------------------------------------

def _render(out: Path, meshes: list[Path], views: int, resolution: int, device: str, timeout: int) -> Path:
    if not HAS_BPY:
        pytest.skip("needs the bpy wheel to render")
    cmd = [sys.executable, str(ROOT / "render_scripts" / "render_dataset.py"), "--meshes", *map(str, meshes),
           "--out", str(out), "--views", str(views), "--step", str(360 // views), "--levels", "clear",
           "--resolution", str(resolution), "--samples", "4", "--albedo-samples", "1", "--no-denoise",
           "--test-fraction", "0", "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]  # the renderer reports on stdout
    return out


@pytest.fixture(scope="module")
def relit(tmp_path_factory) -> Path:
    """2 subjects x 2 views x 1 level at 128 px, rendered by Cycles on the CPU (a first GPU render can
    spend minutes compiling kernels; the GPU render has its own test)."""
    meshes = [AVATARS / "avatar_0000.obj", AVATARS / "avatar_0001.ply"]
    return _render(tmp_path_factory.mktemp("relit") / "data", meshes, 2, 128, "cpu", 600)


def test_cycles_renders_on_the_gpu(tmp_path):
    data = _render(tmp_path / "data", [AVATARS / "avatar_0001.ply"], 1, 64, "gpu", 120)
    views = list(data.glob("subjects/*/views/*/view.json"))
    devices = {json.loads(p.read_text())["render"]["device"] for p in views}
    assert len(views) == 1 and all(d.startswith("GPU:") for d in devices), devices


def test_training_loop_with_amp_on_cuda_keeps_its_scaler_state(relit, tmp_path):
    from backend.train import run_training

    cfg = {"data": str(relit), "out": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
           "model": "small", "model_overrides": TINY, "stage": "color", "loss": "l1+ssim", "steps": 4,
           "batch": 2, "seed": 0, "points_color": 500, "patches": 20, "patch_k": 5, "dense_samples": 30000,
           "workers": 1, "log_every": 2, "checkpoint_every": 4, "val_subjects": 0, "progress_bar": False,
           "device": "cuda", "amp": True}
    result = run_training(cfg)
    assert result["step"] == 4
    curve = result["loss_curve"]
    assert [step for step, _ in curve] == [2.0, 4.0] and all(np.isfinite(loss) for _, loss in curve), curve
    _, state = load_checkpoint(result["checkpoint"], device="cpu")
    assert state["scaler"] and state["scaler"]["scale"] > 0  # the float16 GradScaler ran and was saved


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="DDP over NCCL needs at least 2 GPUs (NCCL refuses two ranks on one GPU)")
def test_ddp_over_nccl_matches_one_process(relit, tmp_path):
    out = tmp_path / "ddp.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--only", "ddp", "--device", "cuda",
           "--data", str(relit), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.is_file(), proc.stderr[-2000:]
    ddp = json.loads(out.read_text())["sections"]["ddp"]
    assert ddp["process_group"] == "nccl" and ddp["world_size"] == torch.cuda.device_count(), ddp
    assert ddp["net_g_identical"] and ddp["net_c_diff_over_moved"] < 0.05, ddp
    assert ddp["first_loss"]["ranks"] == pytest.approx(ddp["first_loss"]["single"], rel=1e-4)
