"""PIFuHD: the release layout, strict and safe loading, and reconstruction from the CLI and the server."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.cli import main as cli_main
from backend.errors import InputError, NotAvailableError
from backend.meshio import load_mesh
from backend.models.checkpoint import save_checkpoint
from backend.models.pifuhd import (
    LevelOptions,
    PIFuHD,
    load_pifuhd,
    read_release,
    release_options,
    save_pifuhd,
    small_options,
    verify_pifuhd,
)
from backend.recon import reconstruct
from backend.recon.analytic import body_image
from backend.recon.framing import frame_subject
from backend.recon.pifuhd import PIFuHDRecon, load_pifuhd_recon
from tests.helpers.models import HALF_THICKNESS, silhouette_pifu, silhouette_pifuhd

KEYS = Path(__file__).resolve().parents[1] / "backend" / "models" / "pifuhd_keys.json"


def _points(n: int = 500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, n, generator=g) * 2 - 1, torch.eye(4)[None]


def _mapped_from(t: torch.Tensor) -> Path | None:
    """The file whose memory mapping holds the tensor's data (Linux /proc/self/maps), else None."""
    ptr = t.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if lo <= ptr < hi:
            return Path(fields[5]).resolve() if len(fields) == 6 and fields[5].startswith("/") else None
    return None


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return body_image(256)


@pytest.fixture(scope="module")
def small() -> PIFuHD:
    """Random weights, small options with both normal nets: for the file-format tests."""
    torch.manual_seed(0)
    return PIFuHD(*small_options(32, normal_ngf=4)).eval()


@pytest.fixture(scope="module")
def hd(image) -> PIFuHD:
    return silhouette_pifuhd(image)


@pytest.fixture(scope="module")
def hd_file(hd, tmp_path_factory) -> Path:
    return save_pifuhd(tmp_path_factory.mktemp("hd") / "pifuhd.pt", hd)


def test_release_options_build_the_official_state_dict_key_for_key():
    """Built on the meta device (no memory): names, shapes and order equal the key list measured on
    the official classes with the same options (764 entries, two 1024-channel normal nets)."""
    expected = json.loads(KEYS.read_text())["model_state_dict"]
    model = PIFuHD(*release_options(), init=False)
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == expected
    assert ["netG.netF.model.13.weight", [1024, 512, 3, 3]] in ours
    assert ["mlp.filters.0.weight", [512, 272, 1]] in ours
    assert ["netG.mlp.filters.0.weight", [1024, 257, 1]] in ours
    # Ω is the coarse MLP's 256-channel activation after layer 2 (the fine MLP's 272 = 16 + 256)
    assert model.netG.opt.merge_index == 2 and model.opt_netG.mlp_dim[3] == 256


@pytest.mark.slow
def test_release_file_round_trip_is_strict_memory_mapped_and_equal(small, image, tmp_path):
    hd = small
    hd_file = save_pifuhd(tmp_path / "pifuhd.pt", hd, {"step": 3})
    obj = read_release(hd_file)
    assert isinstance(obj["opt"], argparse.Namespace) and obj["opt"].mlp_dim == list(hd.opt.mlp_dim)
    assert isinstance(obj["opt_netG"], argparse.Namespace) and obj["opt_netG"].merge_layer == 2
    loaded, rest = load_pifuhd(hd_file, device="cpu")
    assert rest == {"train_state": {"step": 3}} and not loaded.training
    assert loaded.opt == hd.opt and loaded.opt_netG == hd.opt_netG
    # the weights are the file's pages (mmap), not a second copy
    assert _mapped_from(loaded.netG.mlp.filters[0].weight) == hd_file.resolve()
    assert _mapped_from(loaded.mlp.filters[0].weight) == hd_file.resolve()
    pts, calib = _points()
    img = torch.from_numpy(frame_subject(image, size=hd.load_size).network_input())
    with torch.no_grad():
        hd.encode(img)
        expected = hd.query(pts, calib)
        loaded.encode(img)
        got = loaded.query(pts, calib)
    assert torch.equal(got, expected)
    assert expected.std() > 1e-3   # not a constant field
    summary = verify_pifuhd(hd_file)
    assert summary["fine_size"] == 64 and summary["normal_nets"] == ["netF", "netB"]


def test_missing_extra_and_reshaped_keys_are_named_with_shapes(small, tmp_path):
    obj = read_release(save_pifuhd(tmp_path / "a.pt", small))
    state = dict(obj["model_state_dict"])
    del state["mlp.filters.1.bias"]
    state["netG.mlp.filters.0.weight"] = torch.zeros(3, 3, 1)
    state["netG.extra"] = torch.zeros(1)
    torch.save({**obj, "model_state_dict": state}, tmp_path / "b.pt")
    with pytest.raises(InputError) as info:
        load_pifuhd(tmp_path / "b.pt")
    msg = str(info.value)
    assert "missing key(s): mlp.filters.1.bias" in msg and "unexpected key(s): netG.extra" in msg
    assert "netG.mlp.filters.0.weight (expected [64, 33, 1], got [3, 3, 1])" in msg
    assert "\n" not in msg


def test_only_namespace_is_allow_listed_and_options_are_checked(small, tmp_path):
    obj = read_release(save_pifuhd(tmp_path / "a.pt", small))
    torch.save({**obj, "opt": Path("/etc/passwd")}, tmp_path / "evil.pt")   # any class but Namespace
    with pytest.raises(InputError, match="refusing to unpickle"):
        load_pifuhd(tmp_path / "evil.pt")
    opt = argparse.Namespace(**vars(obj["opt"]))
    del opt.mlp_dim
    torch.save({**obj, "opt": opt}, tmp_path / "noopt.pt")
    with pytest.raises(InputError, match="opt: option 'mlp_dim' is missing"):
        load_pifuhd(tmp_path / "noopt.pt")
    torch.save({"model_state_dict": obj["model_state_dict"]}, tmp_path / "bare.pt")
    with pytest.raises(InputError, match="lacks 'opt'"):
        load_pifuhd(tmp_path / "bare.pt")
    with pytest.raises(InputError, match="must be tuple"):
        LevelOptions.from_namespace(argparse.Namespace(**{**vars(obj["opt_netG"]), "mlp_dim": "257"}), "x")
    fine, coarse = small_options()
    with pytest.raises(InputError, match="hg_dim \\+ Ω"):
        PIFuHD(dataclasses.replace(fine, mlp_dim=(40, 8, 8, 1), mlp_res_layers=(1,)), coarse, init=False)


@pytest.mark.slow
def test_reconstruction_is_the_extruded_silhouette_with_colours(hd, image):
    rec = reconstruct(PIFuHDRecon(hd), image, resolution=48, device="cpu")
    v = rec.vertices
    assert rec.stats["input_size"] == 128 and rec.stats["color_source"] == "image"
    assert len(v) > 500 and 0.9 * HALF_THICKNESS < np.abs(v[:, 2]).max() < 2 * HALF_THICKNESS
    assert v[:, 1].max() - v[:, 1].min() > 1.5   # a standing body spans most of the box's height
    np.testing.assert_array_less(-1e-6, rec.colors)
    pifu = silhouette_pifu(image)
    colored = reconstruct(PIFuHDRecon(hd, pifu), image, resolution=48, device="cpu")
    assert colored.stats["color_source"] == "color-net"
    np.testing.assert_array_equal(colored.vertices, rec.vertices)   # geometry is PIFuHD's alone
    assert not np.allclose(colored.colors, rec.colors)


@pytest.mark.slow
def test_cli_and_server_reconstruct_with_model_pifuhd(hd_file, image, tmp_path, capsys, monkeypatch):
    from avatex_core.client import BackendError, Client
    from tests.helpers.server import running_server

    Image.fromarray(image).save(tmp_path / "person.png")
    out = tmp_path / "rec.ply"
    person = str(tmp_path / "person.png")
    code = cli_main(["reconstruct", person, "--model", "pifuhd", "--checkpoint", str(hd_file),
                     "--out", str(out), "--resolution", "32", "--device", "cpu", "--no-progress"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    mesh = load_mesh(out)
    direct = reconstruct(load_pifuhd_recon(hd_file, device="cpu"), image, resolution=32, device="cpu")
    np.testing.assert_allclose(mesh.vertices, direct.vertices, atol=1e-5)
    monkeypatch.setenv("AVATEX_WEIGHTS", str(tmp_path / "no-weights"))
    missing = r"no PIFuHD weights: give --checkpoint PATH, or .*no-weights.*avatex weights fetch pifuhd"
    with pytest.raises(NotAvailableError, match=missing):
        load_pifuhd_recon(None)
    code = cli_main(["reconstruct", person, "--model", "pifuhd", "--net-g", str(hd_file), "--out",
                     str(tmp_path / "x.ply")])
    assert code != 0 and "--model pifuhd takes --checkpoint" in capsys.readouterr().err

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "pifuhd.pt").write_bytes(hd_file.read_bytes())
    save_checkpoint(tmp_path / "m" / "color.pt", silhouette_pifu(image))
    with running_server(roots=[tmp_path / "m"], devices=["cpu"]) as server, Client(server.endpoint) as client:
        res = client.call("reconstruct", {"model": "pifuhd", "checkpoint": "pifuhd.pt", "resolution": 32},
                          {"image": image}, timeout=300)
        np.testing.assert_allclose(res.arrays["vertices"], direct.vertices, atol=1e-5)
        colored = client.call("reconstruct", {"model": "pifuhd", "checkpoint": "pifuhd.pt", "resolution": 32,
                                              "color_checkpoint": "color.pt"}, {"image": image}, timeout=300)
        assert colored.result["stats"]["color_source"] == "color-net"
        with pytest.raises(BackendError, match="no PIFuHD weights: give --checkpoint PATH"):
            client.call("reconstruct", {"model": "pifuhd"}, {"image": image}, timeout=60)
        with pytest.raises(BackendError, match="color_checkpoint' is for model 'pifuhd'"):
            client.call("reconstruct", {"checkpoint": "color.pt", "color_checkpoint": "color.pt"},
                        {"image": image}, timeout=60)
