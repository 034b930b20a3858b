"""Training losses: patch-wise SSIM against scikit-image, the paper's global variant, occupancy and L1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from backend.train.losses import (
    color_loss,
    lab_unit,
    occupancy_loss,
    patch_ssim,
    patch_ssim_loss,
    patch_std,
)


def _skimage_ssim(x: np.ndarray, y: np.ndarray, k: int, **kw) -> float:
    """SSIM of two k x k x C images by scikit-image, one window covering the whole image."""
    return structural_similarity(x, y, win_size=k, data_range=2.0, channel_axis=-1, K1=0.01, K2=0.03,
                                 **kw)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_patch_ssim_equals_scikit_image_on_grid_patches(k):
    rng = np.random.default_rng(k)
    m = 6
    # Structured and noisy patches in [-1, 1]: a gradient plus noise, compared with a distorted copy.
    target = np.clip(rng.uniform(-1, 1, (m, 1, 1, 3)) + rng.normal(0, 0.3, (m, k, k, 3)), -1, 1)
    pred = np.clip(0.7 * target + rng.normal(0, 0.2, (m, k, k, 3)) + 0.1, -1, 1)
    expected = np.array([_skimage_ssim(pred[i], target[i], k, gaussian_weights=False,
                                       use_sample_covariance=False) for i in range(m)])
    tp = torch.from_numpy(pred.reshape(m, k * k, 3))
    tt = torch.from_numpy(target.reshape(m, k * k, 3))
    per_patch = patch_ssim(tp, tt).mean(dim=-1).numpy()  # channels averaged, as skimage does
    np.testing.assert_allclose(per_patch, expected, atol=1e-5, rtol=0)
    loss = patch_ssim_loss(tp, tt).item()
    assert abs(loss - (1.0 - expected.mean())) < 1e-5
    # Explicit uniform weights give the same value, and float32 stays within tolerance.
    w = torch.full((m, k * k), 7.0)  # unnormalised on purpose
    assert abs(patch_ssim_loss(tp.float(), tt.float(), w).item() - (1.0 - expected.mean())) < 1e-5


def test_patch_ssim_gaussian_weights_equal_scikit_image():
    # skimage's Gaussian window has radius int(3.5 sigma + 0.5): sigma 0.9 px -> radius 3 -> a 7x7 window,
    # which on a 7x7 image weights every pixel by the separable Gaussian of its offset from the centre.
    k, sigma = 7, 0.9
    rng = np.random.default_rng(1)
    target = rng.uniform(-1, 1, (4, k, k, 3))
    pred = np.clip(target + rng.normal(0, 0.4, target.shape), -1, 1)
    expected = np.array([_skimage_ssim(pred[i], target[i], k, gaussian_weights=True, sigma=sigma,
                                       use_sample_covariance=False) for i in range(4)])
    r = np.arange(k) - (k - 1) / 2
    d2 = r[:, None] ** 2 + r[None, :] ** 2
    g = np.exp(-d2 / (2 * sigma ** 2)).ravel()
    weights = torch.from_numpy(np.tile(g, (4, 1)))
    got = patch_ssim(torch.from_numpy(pred.reshape(4, -1, 3)), torch.from_numpy(target.reshape(4, -1, 3)),
                     weights).mean(dim=-1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_patch_ssim_sample_covariance_matches_scikit_image_default():
    k = 5
    rng = np.random.default_rng(2)
    a = rng.uniform(-1, 1, (k, k, 3))
    b = np.clip(a * 0.5 + rng.normal(0, 0.3, a.shape), -1, 1)
    expected = _skimage_ssim(a, b, k, gaussian_weights=False, use_sample_covariance=True)
    got = patch_ssim(torch.from_numpy(a.reshape(1, -1, 3)), torch.from_numpy(b.reshape(1, -1, 3)),
                     unbiased=True).mean().item()
    assert abs(got - expected) < 1e-5


def test_patch_ssim_is_one_for_identical_patches_and_falls_with_distortion():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.uniform(-1, 1, (2, 10, 25, 3)))
    assert patch_ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-12)
    noisy = (x + 0.3 * torch.from_numpy(rng.normal(size=x.shape))).clamp(-1, 1)
    noisier = (x + 0.8 * torch.from_numpy(rng.normal(size=x.shape))).clamp(-1, 1)
    assert 0 < patch_ssim_loss(noisy, x).item() < patch_ssim_loss(noisier, x).item()



def test_signed_range_luminance_term_pitfall_and_unit_range():
    """On [-1, 1] values (design default) a patch mean near 0 makes the luminance term collapse: a
    small brightness shift of mid-grey patches costs almost the whole loss. In [0, 1] ("unit") it
    costs little. Variance/covariance terms are identical in both."""
    rng = np.random.default_rng(6)
    x = torch.from_numpy(rng.uniform(-0.3, 0.3, (4, 25, 3)))  # mid-grey patches with texture
    shifted = x + 0.1
    signed = patch_ssim_loss(shifted, x).item()
    unit = patch_ssim_loss(shifted, x, value_range="unit").item()
    assert signed > 0.5
    assert unit < 0.02
    # "unit" is SSIM of (x+1)/2 with L=1, i.e. what skimage reports on [0, 1] images.
    a, b = shifted[0].numpy().reshape(5, 5, 3), x[0].numpy().reshape(5, 5, 3)
    expected = structural_similarity((a + 1) / 2, (b + 1) / 2, win_size=5, data_range=1.0,
                                     channel_axis=-1, gaussian_weights=False, use_sample_covariance=False)
    got = patch_ssim_loss(shifted[:1], x[:1], value_range="unit").item()
    assert abs(got - (1 - expected)) < 1e-6


def test_seed_variant_reduces_across_patch_centres():
    """The paper's code's statistics: over the M centres, separately for each in-patch offset."""
    rng = np.random.default_rng(4)
    m, p = 50, 27
    y = rng.uniform(-1, 1, (m, p, 3))
    x = np.clip(y + rng.normal(0, 0.3, y.shape), -1, 1)
    mx, my = x.mean(axis=0), y.mean(axis=0)            # (P, C)
    vx = ((x - mx) ** 2).sum(axis=0) / (m - 1)         # the paper's n/(n-1)
    vy = ((y - my) ** 2).sum(axis=0) / (m - 1)
    cxy = ((x - mx) * (y - my)).sum(axis=0) / (m - 1)
    c1, c2 = 0.01 ** 2, 0.03 ** 2                      # the paper's constants (L = 1)
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    expected = float(np.clip(1 - ssim.mean(), 0, 1))
    got = patch_ssim_loss(torch.from_numpy(x), torch.from_numpy(y), variant="seed").item()
    assert abs(got - expected) < 1e-10
    # ... which is not the local statistic.
    assert abs(patch_ssim_loss(torch.from_numpy(x), torch.from_numpy(y)).item() - expected) > 1e-3
    assert patch_ssim(torch.from_numpy(x), torch.from_numpy(y), variant="seed").shape == (p, 3)


def test_ssim_gradient_flows_and_is_finite_on_flat_patches():
    flat = torch.zeros(3, 9, 3, requires_grad=True)
    target = torch.zeros(3, 9, 3)
    loss = patch_ssim_loss(flat, target)
    loss.backward()
    assert torch.isfinite(flat.grad).all()
    x = torch.rand(2, 4, 9, 3, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 4, 9, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: patch_ssim_loss(a, y), (x,))


def test_patch_ssim_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="M, P, C"):
        patch_ssim(torch.zeros(2, 9, 3), torch.zeros(2, 8, 3))
    with pytest.raises(ValueError, match="variant"):
        patch_ssim(torch.zeros(2, 9, 3), torch.zeros(2, 9, 3), variant="global")


def test_occupancy_loss_is_mean_over_stacks_and_bce_option():
    labels = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
    p1 = torch.tensor([[[0.9, 0.2, 0.6, 0.1]]])
    p2 = torch.tensor([[[0.5, 0.5, 0.5, 0.5]]])
    mse1 = ((p1 - labels) ** 2).mean()
    mse2 = ((p2 - labels) ** 2).mean()
    assert occupancy_loss([p1, p2], labels).item() == pytest.approx(((mse1 + mse2) / 2).item())
    bce = -(labels * torch.log(p1) + (1 - labels) * torch.log(1 - p1)).mean()
    assert occupancy_loss(p1, labels, kind="bce").item() == pytest.approx(bce.item(), rel=1e-5)
    with pytest.raises(ValueError):
        occupancy_loss(p1, labels, kind="hinge")


def test_color_loss_mixes():
    rng = np.random.default_rng(5)
    y = torch.from_numpy(rng.uniform(-1, 1, (2, 8, 9, 3)))
    x = (y + 0.2 * torch.from_numpy(rng.normal(size=y.shape))).clamp(-1, 1)
    l1 = (x - y).abs().mean()
    s = patch_ssim_loss(x, y)
    assert color_loss("l1", x, y)["loss"].item() == pytest.approx(l1.item())
    assert color_loss("ssim", x, y, w_ssim=0.5)["loss"].item() == pytest.approx(0.5 * s.item())
    mix = color_loss("l1+ssim", x, y, w_l1=0.16, w_ssim=0.84)
    assert mix["loss"].item() == pytest.approx(0.16 * l1.item() + 0.84 * s.item())
    assert set(mix) == {"loss", "l1", "ssim", "std_ratio", "flat"}


def test_ssim_in_lab_is_scikit_image_ssim_on_colour_science_lab():
    """SSIM in L*a*b*: the Lab values are colour-science's (scaled as documented), the SSIM is
    scikit-image's on them. A x0.8 darkening (the error wild light causes) costs little in either space:
    L*'s cube root compresses the contrast change that sRGB's variance term sees (docs/training.md)."""
    import colour

    rng = np.random.default_rng(11)
    unit = rng.uniform(0.35, 0.75, (6, 25, 3))
    target = torch.from_numpy(unit * 2 - 1)
    dark = torch.from_numpy(unit * 0.8 * 2 - 1)
    srgb = patch_ssim_loss(dark, target, value_range="unit").item()
    lab = patch_ssim_loss(dark, target, space="lab").item()
    assert 0.01 < lab < srgb < 0.06
    ref = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(unit[0]))
    expected_lab = ref / [100, 255, 255] + [0, 128 / 255, 128 / 255]
    assert np.allclose(lab_unit(target[0]).numpy(), expected_lab, atol=2e-3)
    a = lab_unit(dark[:1]).numpy()[0].reshape(5, 5, 3)
    b = lab_unit(target[:1]).numpy()[0].reshape(5, 5, 3)
    want = structural_similarity(a, b, win_size=5, data_range=1.0, channel_axis=-1,
                                 gaussian_weights=False, use_sample_covariance=False)
    got = patch_ssim_loss(dark[:1], target[:1], space="lab").item()
    assert abs(got - (1 - want)) < 1e-5


def test_flat_patches_are_left_out_of_the_ssim_mean():
    rng = np.random.default_rng(12)
    textured = torch.from_numpy(rng.uniform(-0.6, 0.6, (1, 3, 25, 3)))
    flat = torch.full((1, 2, 25, 3), 0.1, dtype=torch.float64)
    target = torch.cat([textured, flat], dim=1)
    pred = (target + 0.2 * torch.from_numpy(rng.normal(size=target.shape))).clamp(-1, 1)
    std = patch_std(target)
    assert torch.all(std[0, 3:] < 1e-6) and torch.all(std[0, :3] > 0.15)
    only_textured = patch_ssim_loss(pred[:, :3], target[:, :3], value_range="unit").item()
    skipped = patch_ssim_loss(pred, target, value_range="unit", min_std=0.05).item()
    everything = patch_ssim_loss(pred, target, value_range="unit").item()
    assert skipped == pytest.approx(only_textured, rel=1e-9)
    assert abs(everything - skipped) > 0.01
    assert patch_ssim_loss(pred[:, 3:], target[:, 3:], min_std=0.05).item() == 0.0
    leaf = pred.clone().requires_grad_(True)
    patch_ssim_loss(leaf, target, value_range="unit", min_std=0.05).backward()
    assert torch.all(leaf.grad[:, 3:] == 0) and leaf.grad[:, :3].abs().sum() > 0
    with pytest.raises(ValueError, match="local"):
        patch_ssim_loss(pred, target, variant="seed", min_std=0.05)


def test_std_ratio_tells_flat_predictions_from_textured_ones():
    rng = np.random.default_rng(13)
    target = torch.from_numpy(rng.uniform(-0.8, 0.8, (2, 6, 25, 3)))
    mean = target.mean(dim=-2, keepdim=True)
    for pred, want in [(target, 1.0), (mean.expand_as(target), 0.0), (mean + 0.5 * (target - mean), 0.5)]:
        parts = color_loss("ssim", pred, target)
        assert parts["std_ratio"].item() == pytest.approx(want, abs=1e-6)
        assert parts["flat"].item() == 0.0
    assert not parts["std_ratio"].requires_grad
