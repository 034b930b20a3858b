"""Intervals for the protocol's cells and differences: bootstrap over test subjects (pure numpy).

The unit of sampling is the **test subject**: the views and lighting levels of one subject are not
independent draws, and the question the report answers is "on other people like these, would the model
still be better?". Training seeds are averaged per subject first (the seed noise then shrinks each
subject's value rather than masquerading as more subjects); their spread is reported beside, as the
seed-to-seed standard deviation of the per-seed means.

A paired difference is computed per subject (model a − model b on the same subject, same seeds' mean)
before resampling, so the subject-to-subject spread that both models share cancels.

With few subjects a percentile bootstrap is too narrow (with 6 subjects it under-covers noticeably), so
a paired difference also carries an **exact sign-flip test**: under "a and b are exchangeable" each
subject's difference is as likely to have either sign, and p is the share of the 2^n sign patterns
whose mean is at least as far from 0 as the one observed. It needs no distribution and is exact for any
n; with 6 subjects its smallest possible p is 2/64 ≈ 0.031, reached only when all six agree in sign. A
difference is called *within noise* when its interval holds 0 **or** p ≥ 0.05.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000
SIGNIFICANCE = 0.05
"""a paired difference with a sign-flip p at or above this is within noise (module docstring)."""
EXACT_UP_TO = 16
"""subjects up to which the sign-flip test enumerates all 2^n patterns; above, it samples RESAMPLES."""


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap percentile interval; ``n`` is the number of subjects resampled."""

    mean: float
    low: float
    high: float
    n: int
    seed_sd: float | None = None
    """standard deviation of the per-seed means (None with one seed)."""
    p: float | None = None
    """two-sided sign-flip p of a paired difference (None for a plain cell)."""
    wins: int | None = None
    """subjects on which the paired difference is negative (a below b); None for a plain cell."""

    @property
    def contains_zero(self) -> bool:
        """Whether the interval holds 0."""
        return self.low <= 0.0 <= self.high

    @property
    def within_noise(self) -> bool:
        """The interval holds 0, or (for a paired difference) the sign-flip p is not below SIGNIFICANCE."""
        return self.contains_zero or (self.p is not None and self.p >= SIGNIFICANCE)

    def text(self, digits: int = 2) -> str:
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def to_dict(self) -> dict[str, float | int | None]:
        out = {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "seed_sd": self.seed_sd}
        if self.p is not None:
            out.update(p=self.p, wins=self.wins)
        return out


def bootstrap_mean(values: Sequence[float] | np.ndarray, *, confidence: float = CONFIDENCE,
                   resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """Mean of ``values`` (one per subject) and its percentile bootstrap interval.

    With one value the interval is that value (no spread can be estimated from it; the report says how
    many subjects each interval rests on). Non-finite values are an error: a failed reconstruction must
    be counted, not dropped here.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("no values to bootstrap")
    if not np.all(np.isfinite(x)):
        raise ValueError("non-finite value among the bootstrap's values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(mean, float(low), float(high), int(x.size))


def sign_flip_p(differences: Sequence[float] | np.ndarray, *, resamples: int = RESAMPLES,
                seed: int = 0) -> float:
    """Two-sided p of the paired sign-flip (randomisation) test that the mean difference is 0.

    Exact (all 2^n sign patterns) up to EXACT_UP_TO subjects, Monte Carlo above (counting the observed
    pattern among the draws). A tie counts as extreme, so p is never 0 and identical models get p = 1.
    """
    d = np.asarray(differences, dtype=np.float64).ravel()
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError("the sign-flip test needs finite differences, one per subject")
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, float(np.abs(d).max()))
    if d.size <= EXACT_UP_TO:
        patterns = (np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1
        signs = 1.0 - 2.0 * patterns
    else:
        draws = np.random.default_rng(seed).choice((-1.0, 1.0), size=(resamples, d.size))
        signs = np.vstack([np.ones((1, d.size)), draws])  # the observed pattern is one of them
    means = np.abs(signs @ d) / d.size
    return float(np.mean(means >= observed - tolerance))


def subject_seed_matrix(values: Mapping[tuple[int, str], float], subjects: Sequence[str],
                        seeds: Sequence[int]) -> np.ndarray:
    """``(seeds, subjects)`` array from ``{(seed, subject): value}``; a missing cell is NaN."""
    out = np.full((len(seeds), len(subjects)), np.nan)
    for i, s in enumerate(seeds):
        for j, sid in enumerate(subjects):
            v = values.get((s, sid))
            if v is not None:
                out[i, j] = float(v)
    return out


def cell_interval(matrix: np.ndarray, **kwargs) -> Interval:
    """A cell from a ``(seeds, subjects)`` matrix: per-subject seed means, bootstrapped over subjects."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or not np.all(np.isfinite(m)):
        raise ValueError("the matrix must be (seeds, subjects) and complete")
    iv = bootstrap_mean(m.mean(axis=0), **kwargs)
    sd = float(np.std(m.mean(axis=1), ddof=1)) if m.shape[0] > 1 else None
    return Interval(iv.mean, iv.low, iv.high, iv.n, sd)


def paired_interval(a: np.ndarray, b: np.ndarray, **kwargs) -> Interval:
    """``a − b`` for two ``(seeds, subjects)`` matrices of the same subjects and seeds (module docstring)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired matrices differ in shape: {a.shape} and {b.shape}")
    iv = cell_interval(a - b, **kwargs)
    per_subject = (a - b).mean(axis=0)
    return replace(iv, p=sign_flip_p(per_subject), wins=int(np.sum(per_subject < 0)))


def verdict(diff: Interval, lower_is_better: bool = True, names: tuple[str, str] = ("a", "b")) -> str:
    """One sentence on a paired difference ``a − b``: within noise (module docstring), or which is
    better."""
    a, b = names
    test = "" if diff.p is None else f", sign-flip p = {diff.p:.3f}"
    if diff.contains_zero:
        return f"{a} − {b} is within noise (the 95 % interval {diff.text()} contains 0{test})"
    if diff.within_noise:
        return (f"{a} − {b} = {diff.text()} is within noise: the interval excludes 0 but the sign-flip "
                f"test does not (p = {diff.p:.3f})")
    better = a if (diff.mean < 0) == lower_is_better else b
    return f"{better} is better: {a} − {b} = {diff.text()}, the interval excludes 0{test}"
