"""Training pieces that need no dataset: config, CLI flags, gradient flow, data order, run-folder rules."""

from __future__ import annotations

import argparse

import pytest
import torch

from backend.errors import InputError
from backend.models import PIFu
from backend.train.config import TrainConfig
from backend.train.data import StepSampler, image_tensors
from backend.train.loop import Objective, configure_trainable, lr_at, make_optimizers, resolve_config
from tests.helpers.models import train_config, training_batch
from tests.helpers.tiny_models import tiny_config


@pytest.mark.parametrize("loss", ["l1", "ssim", "l1+ssim"])
def test_frozen_geometry_only_colour_net_gets_gradients(loss):
    torch.manual_seed(0)
    model = PIFu(tiny_config())
    cfg = train_config(stage="color", loss=loss)
    configure_trainable(model, cfg)
    model.train()
    assert not model.net_g.training and model.net_c.training  # netG in eval mode, as PIFu/seed
    out = Objective(model, cfg)(training_batch())
    out["loss"].backward()
    for name, p in model.net_g.named_parameters():
        assert p.grad is None or not p.grad.any(), f"netG parameter {name} received a gradient"
        assert not p.requires_grad
    grads = [p.grad for p in model.net_c.parameters()]
    assert all(g is not None for g in grads)
    assert all(g.abs().sum() > 0 for g in grads), "every netC parameter should get a gradient"
    assert set(make_optimizers(model, cfg)) == {"color"}


def test_joint_training_keeps_colour_loss_out_of_the_geometry_net():
    torch.manual_seed(0)
    model = PIFu(tiny_config())
    cfg = train_config(stage="both", loss="l1", pool_surface=20000, pool_uniform=1250)
    configure_trainable(model, cfg)
    model.train()
    out = Objective(model, cfg)(training_batch())
    out["color"].backward()  # the colour part alone
    assert all(p.grad is None or not p.grad.any() for p in model.net_g.parameters())
    assert all(p.grad is not None for p in model.net_c.parameters())
    model.zero_grad(set_to_none=True)
    out = Objective(model, cfg)(training_batch())
    out["occupancy"].backward()
    # (PIFu's ConvBlocks allocate a downsample norm they only use when channels change: those stay None.)
    params = list(model.net_g.parameters())
    assert sum(p.grad is not None for p in params) > 0.8 * len(params)
    assert all(p.grad is None for p in model.net_c.parameters())


def test_geometry_stage_uses_every_stack():
    torch.manual_seed(0)
    model = PIFu(tiny_config(num_stack=2), with_color=False)
    cfg = train_config(stage="geometry", pool_surface=20000, pool_uniform=1250)
    configure_trainable(model, cfg)
    model.train()
    out = Objective(model, cfg)(training_batch())
    assert len(model.net_g.intermediate_preds_list) == 2
    labels = training_batch()["geo_labels"]
    expected = sum(((p - labels) ** 2).mean() for p in model.net_g.intermediate_preds_list) / 2
    assert out["occupancy"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert isinstance(make_optimizers(model, cfg)["geometry"], torch.optim.RMSprop)


def test_step_sampler_shards_each_globaltraining_batch():
    single = list(StepSampler(3, 6, global_batch=4))
    assert single == list(range(12, 24))
    ranks = [list(StepSampler(3, 6, 4, rank=r, world_size=2)) for r in range(2)]
    # Each step's global batch is split between ranks: rank 0 takes slots 0-1, rank 1 slots 2-3.
    assert ranks[0] == [12, 13, 16, 17, 20, 21] and ranks[1] == [14, 15, 18, 19, 22, 23]
    assert sorted(ranks[0] + ranks[1]) == single
    with pytest.raises(InputError, match="divisible"):
        StepSampler(0, 1, 3, rank=0, world_size=2)


def test_image_tensors_mask_and_range():
    rgba = torch.zeros(8, 8, 4, dtype=torch.uint8).numpy()
    rgba[2:6, 2:6] = (255, 0, 128, 255)
    img, mask = image_tensors(rgba, 8)
    assert img.shape == (3, 8, 8) and mask.shape == (1, 8, 8)
    assert img[:, 0, 0].tolist() == [0.0, 0.0, 0.0]       # background is 0 after masking
    assert img[0, 3, 3].item() == pytest.approx(1.0) and img[1, 3, 3].item() == pytest.approx(-1.0)
    small, m2 = image_tensors(rgba, 4)
    assert small.shape == (3, 4, 4) and m2.min() >= 0 and m2.max() <= 1


def test_config_rejects_bad_values_with_names():
    with pytest.raises(InputError, match="unknown training config field.*bogus"):
        TrainConfig.from_dict({"data": "d", "out": "o", "bogus": 1})
    with pytest.raises(InputError) as err:
        TrainConfig.from_dict({"data": "d", "out": "o", "stage": "texture", "loss": "l2", "batch": 0,
                               "patch_k": 1, "steps": 5, "epochs": 1.0})
    msg = str(err.value)
    for word in ("stage", "loss", "batch", "patch_k", "steps or epochs"):
        assert word in msg
    with pytest.raises(InputError, match="data .* required"):
        TrainConfig.from_dict({"out": "o"})
    with pytest.raises(InputError, match="init_c needs init_g"):
        TrainConfig.from_dict({"data": "d", "out": "o", "init_c": "net_C"})


def test_config_from_toml_and_total_steps(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[train]\ndata = "ds"\nout = "run"\nloss = "l1+ssim"\nw_l1 = 0.16\nw_ssim = 0.84\n'
                 'levels = ["wild", "clear"]\nepochs = 2.5\nbatch = 4\n')
    cfg = TrainConfig.from_toml(f)
    assert cfg.loss == "l1+ssim" and cfg.levels == ["wild", "clear"] and cfg.w_ssim == 0.84
    assert cfg.total_steps(items=10) == 7  # ceil(2.5 * 10 / 4)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    (tmp_path / "bad.toml").write_text("data = [")
    with pytest.raises(InputError, match="could not parse"):
        TrainConfig.from_toml(tmp_path / "bad.toml")


def test_lr_schedule_steps_down_at_fractions():
    cfg = train_config(lr=1e-3, lr_decay_at=[0.6, 0.8], lr_gamma=0.1)
    assert lr_at(cfg, 0, 100) == pytest.approx(1e-3)
    assert lr_at(cfg, 59, 100) == pytest.approx(1e-3)
    assert lr_at(cfg, 60, 100) == pytest.approx(1e-4)
    assert lr_at(cfg, 99, 100) == pytest.approx(1e-5)


def test_cli_flags_override_config_file(tmp_path):
    from backend.cli import build_parser
    from backend.cli.train import build_config

    f = tmp_path / "c.toml"
    f.write_text('data = "from-file"\nbatch = 8\npatches = 50\n')
    args = build_parser().parse_args(["train", "--config", str(f), "--out", "R", "--batch", "2", "--loss",
                                      "l1", "--set", "patches=400", "--set", "ssim_variant=seed", "--levels",
                                      "wild"])
    config = build_config(args)
    assert config["data"] == "from-file" and config["batch"] == 2 and config["patches"] == 400
    assert config["ssim_variant"] == "seed" and config["levels"] == ["wild"] and config["loss"] == "l1"
    args = build_parser().parse_args(["train", "--resume", "R2", "--steps", "10"])
    assert build_config(args) == {"steps": 10, "out": "R2", "resume": True}
    bad = argparse.Namespace(**{**vars(args), "set": ["novalue"]})
    with pytest.raises(InputError, match="KEY=VALUE"):
        build_config(bad)


def test_resume_needs_a_checkpoint_and_fresh_runs_refuse_used_folders(tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        resolve_config({"out": str(tmp_path), "resume": True})
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step-00000004.pt").write_bytes(b"x")
    with pytest.raises(InputError, match="already holds a run"):
        resolve_config({"data": str(tmp_path), "out": str(tmp_path)})


def test_subject_cache_is_keyed_by_mesh_and_parameters_and_survives_damage(tmp_path):
    import numpy as np
    import trimesh

    from backend.meshio import ColoredMesh
    from backend.train import cache

    m = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    mesh = ColoredMesh(vertices=np.asarray(m.vertices), faces=np.asarray(m.faces),
                       vertex_colors=np.full((len(m.vertices), 3), 0.5, np.float32))
    a = cache.surface_samples(mesh, 500, tmp_path)
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith(cache.mesh_hash(mesh)[:32])
    b = cache.surface_samples(mesh, 500, tmp_path)  # from disk
    np.testing.assert_array_equal(a.points, b.points)
    files[0].write_bytes(b"damaged")                 # a damaged file is rebuilt, identically
    c = cache.surface_samples(mesh, 500, tmp_path)
    np.testing.assert_array_equal(a.colors, c.colors)
    cache.surface_samples(mesh, 600, tmp_path)       # other parameters: another file
    mesh.vertex_colors = mesh.vertex_colors * 0.5    # other colours: another hash
    cache.surface_samples(mesh, 500, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 3
    pool = cache.geometry_pool(mesh, 2000, 200, 0.05, tmp_path)
    again = cache.geometry_pool(mesh, 2000, 200, 0.05, tmp_path)
    np.testing.assert_array_equal(pool.surface_inside, again.surface_inside)
    r = np.linalg.norm(pool.uniform_points, axis=1)
    clear = np.abs(r - 0.5) > 0.02
    assert (pool.uniform_inside[clear] == (r[clear] < 0.5)).all()


def test_workers_keep_subjects_within_a_byte_budget(tmp_path):
    import numpy as np
    import trimesh

    from backend.meshio import ColoredMesh
    from backend.train.cache import SubjectSampling
    from backend.train.data import TrainItems

    states = {}
    for i, sub in enumerate((2, 3, 2)):
        m = trimesh.creation.icosphere(subdivisions=sub, radius=0.5 + 0.1 * i)
        mesh = ColoredMesh(vertices=np.asarray(m.vertices), faces=np.asarray(m.faces),
                           vertex_colors=np.full((len(m.vertices), 3), 0.5, np.float32))
        states[f"s{i}"] = SubjectSampling.build(mesh, dense_samples=4000, geometry=True, pool_surface=2000,
                                                pool_uniform=200, sigma_geometry=0.05, cache_dir=tmp_path)
    s0 = states["s0"]
    floor = s0.surface.points.nbytes * 2 + s0.mesh.vertices.nbytes + s0.pool.surface_points.nbytes
    assert s0.nbytes > floor and states["s1"].nbytes > s0.nbytes  # the finer sphere holds more
    items = TrainItems(train_config(), [], 64, tmp_path, memory_bytes=s0.nbytes + states["s1"].nbytes)
    items.remember("s0", s0)
    items.remember("s1", states["s1"])
    assert list(items._subjects) == ["s0", "s1"] and items.held_bytes() <= items.memory_bytes
    items.remember("s2", states["s2"])          # over budget: the least recently used goes
    assert list(items._subjects) == ["s1", "s2"]
    tiny = TrainItems(train_config(), [], 64, tmp_path, memory_bytes=1)
    tiny.remember("s1", states["s1"])           # the newest stays even alone over the budget
    assert list(tiny._subjects) == ["s1"]
