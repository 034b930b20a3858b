"""Checkpoint I/O: official net_G / net_C files load strictly; avatex checkpoints round-trip."""

from __future__ import annotations

import os
import pickle
import random
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.errors import InputError
from backend.models import ModelConfig, PIFu
from backend.models.checkpoint import (
    export_official,
    load_checkpoint,
    load_models,
    load_official,
    official_layout,
    read_state_dict,
    save_checkpoint,
)
from tests.helpers.tiny_models import compact_config

ALIAS = ".downsample.0."


def official_state(which: str, seed: int = 0, equal_aliases: bool = True) -> OrderedDict:
    """A state_dict with exactly the official keys and shapes and random values.

    With ``equal_aliases`` the ``bn4`` / ``downsample.0`` pairs share one tensor, as in a real file
    (torch.save stores an alias once); without it every key gets its own random tensor.
    """
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict((k, torch.randn(shape, generator=g)) for k, shape in official_layout(which))
    if equal_aliases:
        for k in state:
            if ALIAS in k:
                state[k.replace(ALIAS, ".bn4.")] = state[k]
    return state


def save(path: Path, obj, legacy: bool = False) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(scope="module")
def net_g_file(tmp_path_factory) -> tuple[Path, OrderedDict]:
    state = official_state("net_G")
    return save(tmp_path_factory.mktemp("official") / "net_G", state), state


def assert_loaded(module: torch.nn.Module, state: dict) -> None:
    loaded = module.state_dict()
    assert list(loaded) == list(state)
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k


@pytest.mark.parametrize(("variant", "norm"), [("net_C_group", "group"), ("net_C_instance", "instance")])
def test_official_files_load_strictly_and_the_colour_norm_is_detected(tmp_path, net_g_file, variant, norm):
    g_path, g_state = net_g_file
    c_state = official_state(variant, seed=1)
    model = load_official(g_path, save(tmp_path / "net_C", c_state), device="cpu")
    assert model.config.norm_color == norm
    assert model.config == ModelConfig.official(norm_color=norm)
    assert_loaded(model.net_g, g_state)
    assert_loaded(model.net_c, c_state)
    assert not model.training


def test_geometry_only_and_legacy_format_and_dataparallel_prefix(tmp_path, net_g_file):
    _, g_state = net_g_file
    legacy = save(tmp_path / "net_G_legacy", g_state, legacy=True)  # pre-1.6 torch.save format
    model = load_official(legacy)
    assert model.net_c is None
    assert_loaded(model.net_g, g_state)
    wrapped = save(tmp_path / "net_G_dp", OrderedDict(("module." + k, v) for k, v in g_state.items()))
    assert_loaded(load_official(wrapped).net_g, g_state)


def test_independent_alias_values_load_with_a_warning(tmp_path):
    """Random tensors for every key of the key list, as a file built naively from it would hold."""
    state = official_state("net_G", seed=3, equal_aliases=False)
    with pytest.warns(UserWarning, match="aliased keys"):
        model = load_official(save(tmp_path / "net_G", state))
    loaded = model.net_g.state_dict()
    for k, v in state.items():
        want = state.get(k.replace(".bn4.", ALIAS), v)
        assert torch.equal(loaded[k], want), k  # the downsample.0 copy (what forward reads) wins


def test_real_layout_loads_without_warnings(tmp_path, net_g_file):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_official(net_g_file[0], save(tmp_path / "net_C", official_state("net_C_group")))


BROKEN = {
    "net_G": ("image_filter.m2.b2_plus_1.conv3.weight", "surface_classifier.conv2.weight"),
    "net_C_group": ("image_filter.model.2.weight", "image_filter.model.10.conv_block.5.weight"),
    "net_C_instance": ("image_filter.model.13.conv_block.1.bias", "surface_classifier.conv0.weight"),
}


@pytest.mark.parametrize("which", list(BROKEN))
@pytest.mark.parametrize("damage", ["missing", "extra", "reshaped"])
def test_damaged_official_files_are_rejected_naming_the_key(tmp_path, net_g_file, which, damage):
    state = official_state(which, seed=2)
    drop, reshape = BROKEN[which]
    if damage == "missing":
        del state[drop]
        expect = f"missing key(s): {drop}"
    elif damage == "extra":
        state["image_filter.extra_layer.weight"] = torch.zeros(3)
        expect = "unexpected key(s): image_filter.extra_layer.weight"
    else:
        shape = list(state[reshape].shape)
        state[reshape] = torch.zeros([shape[0] + 1, *shape[1:]])
        expect = f"wrong shape: {reshape} (expected {shape}, got {[shape[0] + 1, *shape[1:]]})"
    path = save(tmp_path / which, state)
    with pytest.raises(InputError) as err:
        if which == "net_G":
            load_official(path)
        else:
            load_official(net_g_file[0], path)
    assert expect in str(err.value)
    assert str(path) in str(err.value)


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "net_G"
    path.write_bytes(pickle.dumps({"image_filter.conv1.weight": Payload()}, protocol=2))
    with pytest.raises(InputError, match="refusing to unpickle"):
        load_official(path)
    assert not marker.exists()
    torch.save({"weights": Payload()}, tmp_path / "ckpt.pt")
    marker.unlink(missing_ok=True)
    with pytest.raises(InputError, match="refusing to unpickle"):
        load_checkpoint(tmp_path / "ckpt.pt")
    assert not marker.exists()


def training_state(model: PIFu) -> dict:
    """What a training loop would store for exact resume: step, optimizer state, every RNG."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    s = model.config.load_size
    model.encode(torch.rand(1, 3, s, s) * 2 - 1)
    model.query_color(torch.rand(1, 3, 32) * 2 - 1, torch.eye(4)[None]).mean().backward()
    opt.step()
    model.eval()
    return {"step": 7, "epoch": 0, "loss_history": [0.5, 0.25], "optimizer": opt.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.default_rng(5).bit_generator.state,
                    "python": random.Random(5).getstate()},
            "note": "colour fine-tuning", "lr": 1e-3, "best": None}


def assert_same_tree(a, b, where="train_state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_avatex_checkpoint_round_trips_weights_config_and_training_state(tmp_path):
    torch.manual_seed(0)
    model = PIFu(compact_config(upsample="nearest"))
    state = training_state(model)
    path = save_checkpoint(tmp_path / "ckpt" / "model.pt", model, state)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # atomic: no temporaries left
    loaded, loaded_state = load_checkpoint(path, device="cpu")
    assert loaded.config == model.config and loaded.config.upsample == "nearest"
    assert_loaded(loaded.net_g, model.net_g.state_dict())
    assert_loaded(loaded.net_c, model.net_c.state_dict())
    assert_same_tree(state, loaded_state)
    raw = torch.load(path, weights_only=True)  # loadable by anyone without unpickling objects
    assert raw["format"] == "avatex-pifu" and raw["version"] == 1
    opt = torch.optim.Adam(loaded.parameters(), lr=1e-3)
    opt.load_state_dict(loaded_state["optimizer"])  # resumable


def test_small_preset_round_trips_and_geometry_only_models_too(tmp_path):
    small = PIFu(ModelConfig.small())
    loaded = load_models(checkpoint=save_checkpoint(tmp_path / "small.pt", small))
    assert loaded.config == ModelConfig.small()
    assert_loaded(loaded.net_g, small.net_g.state_dict())
    g_only = PIFu(compact_config(upsample="nearest"), with_color=False)
    loaded, state = load_checkpoint(save_checkpoint(tmp_path / "g.pt", g_only))
    assert loaded.net_c is None and state == {}


def test_training_state_that_would_need_unpickling_is_rejected_by_name(tmp_path):
    model = PIFu(compact_config(upsample="nearest"), with_color=False)
    for bad, where in [({"rng": {"numpy": np.zeros(3)}}, "train_state['rng']['numpy']"),
                       ({"loss": np.float64(0.5)}, "train_state['loss']"),
                       ({"opts": [1, {2: object()}]}, "train_state['opts'][1][2]")]:
        with pytest.raises(InputError) as err:
            save_checkpoint(tmp_path / "bad.pt", model, bad)
        assert where in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_export_official_loads_back_strictly(tmp_path):
    torch.manual_seed(0)
    official = PIFu(ModelConfig.official(norm_color="instance"), init=False)
    for p in official.parameters():
        torch.nn.init.normal_(p, 0.0, 0.02)
    paths = export_official(official, tmp_path / "official")
    assert sorted(p.name for p in paths.values()) == ["avatex_config.json", "net_C", "net_G"]
    raw = torch.load(paths["net_G"], weights_only=True)
    assert [(k, tuple(v.shape)) for k, v in raw.items()] == official_layout("net_G")
    back = load_official(paths["net_G"], paths["net_C"])
    assert back.config.norm_color == "instance"
    assert_loaded(back.net_g, official.net_g.state_dict())
    assert_loaded(back.net_c, official.net_c.state_dict())

    tiny = PIFu(compact_config(upsample="nearest"))
    paths = export_official(tiny, tmp_path / "tiny")
    back = load_official(paths["net_G"], paths["net_C"], config=tiny.config)
    assert_loaded(back.net_c, tiny.net_c.state_dict())
    with pytest.raises(InputError) as err:
        load_official(paths["net_G"])  # official sizes expected by default
    assert "image_filter.bn1.bias (expected [64], got [16])" in str(err.value)


def test_the_loaders_say_which_loader_a_file_needs(tmp_path, net_g_file):
    with pytest.raises(InputError, match="official PIFu state_dict"):
        load_checkpoint(net_g_file[0])
    ckpt = save_checkpoint(tmp_path / "c.pt", PIFu(compact_config(upsample="nearest"), with_color=False))
    with pytest.raises(InputError, match="avatex checkpoint, not an official"):
        read_state_dict(ckpt)
    with pytest.raises(InputError, match="not found"):
        load_models(checkpoint=tmp_path / "missing.pt")
    with pytest.raises(InputError, match="not both"):
        load_models(checkpoint=ckpt, net_g=net_g_file[0])
    with pytest.raises(InputError, match="no model given"):
        load_models()
    with pytest.raises(InputError, match="needs its net_G"):
        load_models(net_c=net_g_file[0])
    (tmp_path / "junk").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError):
        load_models(net_g=tmp_path / "junk")


@pytest.mark.parametrize("junk", [b"", b"\x00", b"abc", b"PK\x03\x04 not a zip", bytes(range(256)) * 3])
def test_junk_files_give_a_clear_error(tmp_path, junk):
    from backend.errors import InputError
    from backend.models.checkpoint import load_checkpoint

    path = tmp_path / "junk.pt"
    path.write_bytes(junk)
    with pytest.raises(InputError, match="junk.pt"):
        load_checkpoint(path)
