"""PSNR / SSIM (plain and masked), LPIPS availability, and the input-view vs novel-view report."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from backend.errors import InputError, NotAvailableError
from backend.metrics.image import compare_views, lpips_distance, lpips_status, psnr, ssim


def textured_image(rng: np.random.Generator, h: int = 64, w: int = 80) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / 5.0), np.cos(yy / 7.0), np.sin((xx + yy) / 9.0)], axis=2) * 0.4 + 0.5
    return np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1)


def test_psnr_known_values():
    gt = np.zeros((16, 16, 3))
    assert psnr(gt + 0.1, gt, data_range=1.0) == pytest.approx(20.0)
    assert psnr(gt + 0.2, gt, data_range=2.0) == pytest.approx(20.0)
    assert psnr(gt, gt, data_range=1.0) == float("inf")
    a = np.full((8, 8, 3), 100, dtype=np.uint8)
    b = np.full((8, 8, 3), 110, dtype=np.uint8)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255.0 ** 2 / 100.0))


def test_masked_psnr_ignores_the_background():
    gt = np.zeros((20, 20, 3))
    pred = gt + 0.1
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:15, 5:15] = True
    pred[~mask] = 1.0  # huge error outside the subject
    assert psnr(pred, gt, data_range=1.0, mask=mask) == pytest.approx(20.0)
    assert psnr(pred, gt, data_range=1.0) < 5.0
    alpha = mask.astype(np.uint8) * 255
    assert psnr(pred, gt, data_range=1.0, mask=alpha) == pytest.approx(20.0)


def test_ssim_matches_scikit_image_in_wang_mode():
    rng = np.random.default_rng(0)
    gt = textured_image(rng)
    pred = np.clip(gt + 0.08 * rng.standard_normal(gt.shape), 0, 1)
    reference = structural_similarity(pred, gt, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False)
    assert ssim(pred, gt, data_range=1.0) == pytest.approx(reference, abs=1e-10)
    grey_ref = structural_similarity(pred[..., 0], gt[..., 0], data_range=1.0, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert ssim(pred[..., 0], gt[..., 0], data_range=1.0) == pytest.approx(grey_ref, abs=1e-10)
    assert ssim(gt, gt, data_range=1.0) == pytest.approx(1.0, abs=1e-12)


def test_ssim_data_range_matters_and_uint8_is_handled():
    rng = np.random.default_rng(1)
    gt = textured_image(rng)
    pred = np.clip(gt + 0.1 * rng.standard_normal(gt.shape), 0, 1)
    right = ssim(pred, gt, data_range=1.0)
    wrong = ssim(pred, gt, data_range=255.0)  # the classic mistake: far too close to 1
    assert right < 0.9 < wrong
    as_uint8 = ssim(np.rint(pred * 255).astype(np.uint8), np.rint(gt * 255).astype(np.uint8))
    assert as_uint8 == pytest.approx(right, abs=5e-3)


def test_masked_ssim_averages_the_map_over_masked_centres():
    rng = np.random.default_rng(2)
    gt = textured_image(rng)
    pred = np.clip(gt + 0.08 * rng.standard_normal(gt.shape), 0, 1)
    mask = np.zeros(gt.shape[:2], dtype=bool)
    mask[10:40, 20:70] = True
    _, full = structural_similarity(pred, gt, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, full=True)
    expected = full[mask].mean()  # every masked centre is at least 5 pixels from the border here
    assert ssim(pred, gt, data_range=1.0, mask=mask) == pytest.approx(expected, abs=1e-10)


def test_input_errors_are_named():
    a = np.zeros((16, 16, 3))
    with pytest.raises(InputError, match="data_range"):
        psnr(a, a)
    with pytest.raises(InputError, match="shape"):
        ssim(a, a[:8], data_range=1.0)
    with pytest.raises(InputError, match="at least 11"):
        ssim(a[:8, :8], a[:8, :8], data_range=1.0)
    with pytest.raises(InputError, match="mask shape"):
        psnr(a, a, data_range=1.0, mask=np.ones((4, 4), bool))
    with pytest.raises(InputError, match="empty"):
        psnr(a, a, data_range=1.0, mask=np.zeros((16, 16), bool))


def test_lpips_is_skipped_without_weights_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    status = lpips_status("alex")
    assert not status.available
    assert status.reason  # names the missing package or the missing weights file
    with pytest.raises(NotAvailableError, match="LPIPS skipped"):
        lpips_distance(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)), data_range=1.0)
    with pytest.raises(InputError):
        lpips_status("resnet")


def test_compare_views_reports_input_and_novel_means(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    rng = np.random.default_rng(3)
    gt = [textured_image(rng) for _ in range(3)]
    noise = [0.02, 0.05, 0.1]
    pred = [np.clip(g + s * rng.standard_normal(g.shape), 0, 1) for g, s in zip(gt, noise, strict=True)]
    mask = np.ones(gt[0].shape[:2], dtype=bool)
    report = compare_views([(pred[0], gt[0], mask)], [(pred[1], gt[1], None), (pred[2], gt[2], mask)],
                           data_range=1.0)
    assert report["input"]["views"] == 1 and report["novel"]["views"] == 2
    assert report["input"]["psnr"] == pytest.approx(psnr(pred[0], gt[0], data_range=1.0, mask=mask))
    novel_psnr = [psnr(pred[1], gt[1], data_range=1.0), psnr(pred[2], gt[2], data_range=1.0)]
    assert report["novel"]["psnr"] == pytest.approx(np.mean(novel_psnr))
    novel_ssim = [ssim(pred[1], gt[1], data_range=1.0), ssim(pred[2], gt[2], data_range=1.0)]
    assert report["novel"]["ssim"] == pytest.approx(np.mean(novel_ssim))
    assert report["input"]["psnr"] > report["novel"]["psnr"]
    assert report["lpips"]["available"] is False and report["input"]["lpips"] is None
    empty = compare_views([], data_range=1.0, lpips=False)
    assert empty["input"]["views"] == 0 and empty["input"]["psnr"] is None
    assert empty["lpips"]["reason"] == "not requested"
