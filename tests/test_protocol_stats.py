"""Bootstrap intervals of the protocol (backend.experiment.stats) on data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from backend.experiment import stats


def test_interval_of_a_normal_sample_matches_the_textbook_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 2.0, size=400)
    iv = stats.bootstrap_mean(x, seed=1)
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert iv.mean == pytest.approx(x.mean())
    assert iv.low == pytest.approx(x.mean() - 1.96 * se, abs=0.25 * se)
    assert iv.high == pytest.approx(x.mean() + 1.96 * se, abs=0.25 * se)
    assert iv.n == 400 and not iv.contains_zero


def test_coverage_is_near_95_percent():
    rng = np.random.default_rng(2)
    hits = sum(stats.bootstrap_mean(rng.normal(0.0, 1.0, 30), resamples=2000, seed=i).contains_zero
               for i in range(200))
    assert 0.88 <= hits / 200 <= 0.99


def test_constant_values_and_a_single_value_give_a_point_interval():
    iv = stats.bootstrap_mean([3.0, 3.0, 3.0])
    assert (iv.low, iv.mean, iv.high) == (3.0, 3.0, 3.0)
    one = stats.bootstrap_mean([5.5])
    assert (one.low, one.high, one.n) == (5.5, 5.5, 1)
    with pytest.raises(ValueError, match="non-finite"):
        stats.bootstrap_mean([1.0, float("nan")])


def test_paired_difference_cancels_the_shared_subject_spread():
    rng = np.random.default_rng(3)
    subjects = rng.normal(12.0, 4.0, size=12)  # large subject-to-subject spread
    a = subjects[None, :] + rng.normal(0.0, 0.05, size=(3, 12))
    b = a + 0.5  # b is worse by exactly 0.5 on every subject and seed
    diff = stats.paired_interval(a, b)
    assert diff.mean == pytest.approx(-0.5)
    assert diff.high < 0.0 and diff.high - diff.low < 1e-9
    unpaired = stats.bootstrap_mean(a.mean(axis=0) - rng.permutation(b.mean(axis=0)))
    assert unpaired.high - unpaired.low > 1.0  # what pairing saved
    assert "better" in stats.verdict(diff, names=("a", "b")) and "a is better" in stats.verdict(diff)


def test_seed_spread_is_reported_and_noise_is_named():
    m = np.array([[1.0, 2.0, 3.0], [1.2, 2.2, 3.2], [0.8, 1.8, 2.8]])  # seeds x subjects
    iv = stats.cell_interval(m)
    assert iv.mean == pytest.approx(2.0) and iv.seed_sd == pytest.approx(0.2)
    noise = stats.paired_interval(m, m[::-1])
    assert noise.contains_zero and "within noise" in stats.verdict(noise)
    with pytest.raises(ValueError, match="shape"):
        stats.paired_interval(m, m[:, :2])


def test_collect_groups_outfits_of_a_person_and_leaves_out_absent_metrics():
    from types import SimpleNamespace

    from backend.experiment import protocol_report as rep

    def item(model, subject, patd, psnr=None):
        return {"model": model, "subject": subject, "level": "clear", "view": 0, "patd_dense": patd,
                "psnr_novel": psnr}

    ev = {0: SimpleNamespace(per_item=[item("l1", "A_F_1_x", 10.0), item("l1", "A_F_1_y", 14.0),
                                       item("l1", "B_M_2_x", 20.0)]),
          1: SimpleNamespace(per_item=[item("l1", "A_F_1_x", 12.0), item("l1", "A_F_1_y", 16.0),
                                       item("l1", "B_M_2_x", 22.0)])}
    groups = {"A_F_1_x": "A_F_1", "A_F_1_y": "A_F_1", "B_M_2_x": "B_M_2"}
    got = rep.collect(ev, levels=["clear"], groups=groups, models=("l1",))
    assert got["subjects"] == ["A_F_1", "B_M_2"]
    assert got["values"]["patd_dense"]["l1"]["clear"] == [[12.0, 20.0], [14.0, 22.0]]
    assert "psnr_novel" not in got["values"]  # switched off: no cell, no NaN that breaks equality
    assert rep.cell(got, "psnr_novel", "l1", "clear") is None
    assert rep.cell(got, "patd_dense", "l1", "clear").mean == 17.0
    assert got == rep.collect(ev, levels=["clear"], groups=groups, models=("l1",))


def test_sign_flip_p_is_exact_on_small_samples():
    # All six persons agree: only the observed pattern and its mirror are as extreme -> 2 / 64.
    assert stats.sign_flip_p([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == pytest.approx(2 / 64)
    # One of six disagrees, with the largest magnitude: by hand, 28 of the 64 patterns are as extreme.
    assert stats.sign_flip_p([1.0, 2.0, 3.0, 4.0, 5.0, -6.0]) == pytest.approx(28 / 64)
    assert stats.sign_flip_p([0.0, 0.0, 0.0]) == 1.0  # identical models
    with pytest.raises(ValueError, match="finite"):
        stats.sign_flip_p([1.0, float("nan")])


def test_sign_flip_p_holds_its_level_and_finds_a_real_shift():
    rng = np.random.default_rng(5)
    null = [stats.sign_flip_p(rng.normal(0.0, 1.0, 8)) < 0.05 for _ in range(400)]
    assert np.mean(null) <= 0.07  # exact test: at most ~5 % false alarms
    shifted = [stats.sign_flip_p(rng.normal(1.5, 1.0, 8)) < 0.05 for _ in range(100)]
    assert np.mean(shifted) > 0.8
    big = stats.sign_flip_p(rng.normal(0.0, 1.0, 40), seed=1)  # Monte Carlo above EXACT_UP_TO
    assert 0.0 < big <= 1.0
    far = stats.sign_flip_p(np.full(40, 3.0), resamples=999)  # no draw is as extreme but the observed one
    assert far == pytest.approx(1 / 1000)


def test_a_narrow_interval_on_few_persons_is_still_noise_without_the_sign_test():
    # Six persons: five at -1, one at +0.5. The bootstrap interval excludes 0 (four or more draws of the
    # +0.5 person are needed to reach it), yet by hand only 4 of the 64 sign patterns are as extreme.
    a = np.array([[10.0, 11.0, 12.0, 13.0, 14.0, 15.0]])
    b = a + np.array([[1.0, 1.0, 1.0, 1.0, 1.0, -0.5]])
    diff = stats.paired_interval(a, b)
    assert not diff.contains_zero and diff.high < 0
    assert diff.wins == 5 and diff.p == pytest.approx(4 / 64)
    assert diff.within_noise and "within noise" in stats.verdict(diff) and "p = 0.062" in stats.verdict(diff)
    agree = stats.paired_interval(a, a + 0.5)
    assert agree.wins == 6 and agree.p == pytest.approx(2 / 64) and not agree.within_noise
