"""PIFu nets: official state_dict layout, forward semantics, the fast query path, configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from backend.errors import InputError, NotAvailableError
from backend.models import HGPIFuNet, ModelConfig, PIFu, ResBlkPIFuNet
from backend.models.blocks import ConvBlock, index, orthogonal
from backend.models.checkpoint import official_layout
from backend.models.surface_classifier import SurfaceClassifier
from tests.helpers.tiny_models import compact_config

REFERENCE = Path("/work/shared/reference")  # the key lists measured on the official code, where present
TSV = {"net_G": "pifu_netG_keys.tsv", "net_C_group": "pifu_netC_keys.tsv",
       "net_C_instance": "pifu_netC_keys_instance_default.tsv"}


def official_net(which: str) -> torch.nn.Module:
    if which == "net_G":
        return HGPIFuNet(ModelConfig.official(), init=False)
    norm = "group" if which == "net_C_group" else "instance"
    return ResBlkPIFuNet(ModelConfig.official(norm_color=norm), init=False)


@pytest.mark.parametrize("which", list(TSV))
def test_state_dict_layout_is_exactly_the_official_one(which):
    expected = official_layout(which)
    assert len(expected) == {"net_G": 441, "net_C_group": 53, "net_C_instance": 40}[which]
    got = [(k, tuple(v.shape)) for k, v in official_net(which).state_dict().items()]
    assert got == expected  # names, shapes and order


@pytest.mark.parametrize("which", list(TSV))
def test_shipped_layout_is_the_reference_key_list(which):
    path = REFERENCE / TSV[which]
    if not path.is_file():
        pytest.skip("reference key lists not on this machine")
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    assert [(k, tuple(json.loads(s))) for k, s in rows] == official_layout(which)


@pytest.mark.parametrize(("which", "params"), [("net_G", 15_604_738), ("net_C_group", 9_139_398),
                                               ("net_C_instance", 9_136_390)])
def test_parameter_counts_match_the_reference(which, params):
    assert sum(p.numel() for p in official_net(which).parameters()) == params


def test_convblock_bn4_aliases_downsample_and_is_unused_when_widths_match():
    block = ConvBlock(64, 128)
    sd = block.state_dict(keep_vars=True)
    assert sd["bn4.weight"] is sd["downsample.0.weight"]
    same = ConvBlock(64, 64)
    assert same.downsample is None and "bn4.weight" in same.state_dict()
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        before = same(x)
        same.bn4.weight.add_(5.0)
        assert torch.equal(same(x), before)  # bn4 is dead weight where in == out





def small_pifu(seed: int = 0, preset: bool = False) -> PIFu:
    torch.manual_seed(seed)
    return PIFu(ModelConfig.small() if preset else compact_config())


def images_for(model: PIFu, batch: int = 1, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = model.config.load_size
    img = torch.rand(batch, 3, s, s, generator=g) * 2 - 1
    mask = torch.zeros(batch, 1, s, s)
    mask[:, :, s // 8: -s // 8, s // 3: -s // 3] = 1.0
    return img, mask


def eval_calib(batch: int = 1) -> torch.Tensor:
    return torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0])).expand(batch, 4, 4).contiguous()


def test_pifu_encode_and_query_shapes_and_ranges():
    model = small_pifu(preset=True).eval()
    img, mask = images_for(model, batch=2)
    pts = torch.rand(2, 3, 500) * 2.4 - 1.2
    with torch.no_grad():
        model.encode(img * mask)
        occ = model.query_occupancy(pts, eval_calib(2))
        col = model.query_color(pts, eval_calib(2))
    assert occ.shape == (2, 1, 500) and col.shape == (2, 3, 500)
    assert occ.min() >= 0 and occ.max() <= 1 and col.min() >= -1 and col.max() <= 1
    outside = (pts[:, 0].abs() > 1) | (pts[:, 1].abs() > 1)
    assert torch.all(occ[:, 0][outside] == 0)  # official in_img mask: 0 outside the image
    assert torch.all(occ[:, 0][~outside] > 0)


def test_query_matches_the_official_formula():
    model = small_pifu().eval()
    img, mask = images_for(model)
    pts = torch.rand(1, 3, 300) * 2 - 1
    calib = eval_calib()
    with torch.no_grad():
        model.encode(img * mask, channels_last=False)  # the reference below runs NCHW
        occ = model.query_occupancy(pts, calib)
        feat = model.net_g.image_filter(img * mask)[0][-1]
        xyz = orthogonal(pts, calib)
        assert torch.allclose(xyz[:, 1], -pts[:, 1])
        z = xyz[:, 2:3] * model.config.depth_scale
        ref = model.net_g.surface_classifier(torch.cat([index(feat, xyz[:, :2]), z], 1))
        assert torch.allclose(occ, ref)
        # colour net input: G feature first, then its own feature, then depth (official attach order)
        feat_c = torch.cat([feat, model.net_c.image_filter(img * mask)], 1)
        ref_c = model.net_c.surface_classifier(torch.cat([index(feat_c, xyz[:, :2]), z], 1))
        assert torch.allclose(model.query_color(pts, calib), ref_c)
    assert model.config.depth_scale == pytest.approx(1.28)
    assert ModelConfig.official().depth_scale == pytest.approx(1.28)


def test_channels_last_encode_gives_the_same_features():
    """Inference on the CPU encodes NHWC by default (faster oneDNN convolutions); the values match NCHW."""
    model = small_pifu().eval()
    img, mask = images_for(model)
    pts = torch.rand(1, 3, 300) * 2 - 1
    out = {}
    with torch.no_grad():
        for layout in (False, True, None):
            model.encode(img * mask, channels_last=layout)
            feat = model.net_g.get_im_feat()
            out[layout] = (feat.is_contiguous(memory_format=torch.channels_last),
                           model.query_occupancy(pts, eval_calib()), model.query_color(pts, eval_calib()))
    assert [out[k][0] for k in (False, True, None)] == [False, True, True]
    for k in (True, None):
        assert torch.allclose(out[k][1], out[False][1], atol=1e-5)
        assert torch.allclose(out[k][2], out[False][2], atol=1e-5)
    model.encode(img * mask)  # with autograd on (training), NCHW
    assert not model.net_g.get_im_feat().is_contiguous(memory_format=torch.channels_last)


def test_train_mode_keeps_every_stack_and_eval_only_the_last():
    model = small_pifu()
    img, mask = images_for(model)
    pts = torch.rand(1, 3, 64) * 2 - 1
    model.train()
    model.encode(img * mask)
    stacks = model.query_occupancy_stacks(pts, eval_calib())
    assert len(stacks) == model.config.num_stack == 2
    labels = (torch.rand(1, 1, 64) > 0.5).float()
    loss = model.net_g.get_error(labels)
    expected = sum(torch.nn.functional.mse_loss(p, labels) for p in stacks) / 2
    assert torch.allclose(loss, expected)
    loss.backward()
    assert model.net_g.image_filter.conv1.weight.grad is not None
    model.eval()
    with torch.no_grad():
        model.encode(img * mask)
        assert len(model.query_occupancy_stacks(pts, eval_calib())) == 1
        assert torch.allclose(model.query_occupancy(pts, eval_calib()), stacks[-1].detach())


def test_frozen_geometry_trains_only_the_colour_net():
    model = small_pifu()
    model.freeze_geometry()
    model.train()
    assert not model.net_g.training and model.net_c.training
    img, mask = images_for(model)
    model.encode(img * mask)
    assert not model.net_g.get_im_feat().requires_grad
    col = model.query_color(torch.rand(1, 3, 64) * 2 - 1, eval_calib())
    col.abs().mean().backward()
    assert all(p.grad is None for p in model.net_g.parameters())
    assert model.net_c.image_filter.model[1].weight.grad is not None
    model.freeze_geometry(False)
    model.train()
    assert model.net_g.training and all(p.requires_grad for p in model.net_g.parameters())


def test_upsample_switch_changes_the_hourglass():
    torch.manual_seed(0)
    bicubic = HGPIFuNet(compact_config()).eval()
    nearest = HGPIFuNet(compact_config(upsample="nearest")).eval()
    nearest.load_state_dict(bicubic.state_dict())
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        a, b = bicubic.filter(x)[-1], nearest.filter(x)[-1]
        assert a.shape == b.shape == (1, 64, 32, 32)
        assert not torch.allclose(a, b)
        bicubic.image_filter.set_upsample("nearest")
        assert torch.allclose(bicubic.filter(x)[-1], b)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("dims", [(257, 1024, 512, 256, 128, 1), (513, 1024, 512, 256, 128, 3)])
def test_preprojected_mlp_equals_the_plain_mlp(dims, residual):
    """W . bilinear(F) == bilinear(W . F): the fast path at official MLP sizes, border and outside
    points included (zero padding commutes too)."""
    torch.manual_seed(0)
    mlp = SurfaceClassifier(dims, residual, torch.nn.Sigmoid() if dims[-1] == 1 else torch.nn.Tanh())
    for m in mlp.modules():  # unit-variance layers, so the comparison is not trivially saturated
        if isinstance(m, torch.nn.Conv1d):
            torch.nn.init.normal_(m.weight, 0.0, (2.0 / m.weight.shape[1]) ** 0.5)
            torch.nn.init.normal_(m.bias, 0.0, 0.1)
    feat = torch.randn(1, dims[0] - 1, 24, 20)
    uv = torch.rand(1, 2, 3000) * 2.3 - 1.15
    uv[0, :, :4] = torch.tensor([[-1.0, 1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]])  # the corners exactly
    uv[0, :, 100:200] = uv[0, :, 100:101]  # a run of one image position (a grid column)
    z = torch.randn(1, 1, 3000)
    with torch.no_grad():
        plain = mlp(torch.cat([index(feat, uv), z], 1))
        fast = mlp.forward_projected(mlp.project(feat), uv, z)
    assert fast.shape == plain.shape
    assert plain.std() > 0.02
    assert torch.allclose(fast, plain, atol=2e-5, rtol=1e-4)


def test_pifu_fast_queries_equal_plain_queries():
    model = small_pifu().eval()
    img, mask = images_for(model, batch=2)
    pts = torch.rand(2, 3, 2000) * 2.2 - 1.1
    pts[:, :2, 1000:1500] = pts[:, :2, 1000:1001]  # shared image position, varying z
    with torch.inference_mode():
        model.encode(img * mask)
        for query in (model.query_occupancy, model.query_color):
            assert torch.allclose(query(pts, eval_calib(2), fast=True), query(pts, eval_calib(2)), atol=1e-5)
    model.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        model.query_occupancy(pts, eval_calib(2), fast=True)


def test_bad_inputs_are_named():
    model = small_pifu().eval()
    with pytest.raises(InputError, match=r"images must be \[B, 3, 128, 128\]"):
        model.encode(torch.zeros(1, 3, 512, 512))
    with pytest.raises(TypeError):  # one argument: the already-masked network input
        model.encode(torch.zeros(1, 3, 128, 128), torch.zeros(1, 1, 128, 128))
    img, mask = images_for(model)
    model.encode(img * mask)
    with pytest.raises(InputError, match=r"points must be \[B, 3, N\]"):
        model.query_occupancy(torch.zeros(1, 100, 3), eval_calib())
    with pytest.raises(InputError, match="calibs"):
        model.query_occupancy(torch.zeros(1, 3, 10), torch.eye(4))
    geometry_only = PIFu(compact_config(), with_color=False)
    with pytest.raises(NotAvailableError, match="colour net"):
        geometry_only.query_color(torch.zeros(1, 3, 10), eval_calib())


def test_config_presets_round_trip_and_validate():
    official = ModelConfig.official()
    assert official == ModelConfig()
    o = official
    assert (o.load_size, o.num_stack, o.hg_depth, o.hourglass_dim, o.hg_width) == (512, 4, 2, 256, 256)
    assert official.mlp_dim == (257, 1024, 512, 256, 128, 1)
    assert official.mlp_dim_color == (513, 1024, 512, 256, 128, 3)
    assert (official.norm_color, official.upsample, official.feature_size) == ("group", "bicubic", 128)
    small = ModelConfig.small(upsample="nearest")
    assert small.load_size == 256 and small.num_stack < official.num_stack
    d = json.loads(json.dumps(small.to_dict()))  # JSON-safe
    assert ModelConfig.from_dict(d) == small
    with pytest.raises(InputError, match="mlp_dim"):
        ModelConfig.small(mlp_dim=(257, 64, 1))
    with pytest.raises(InputError, match="upsample"):
        ModelConfig(upsample="bilinear")
    with pytest.raises(InputError, match="unknown model config field"):
        ModelConfig.from_dict({**small.to_dict(), "num_stacks": 3})
