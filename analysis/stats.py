"""Descriptive statistics across seeds: summaries with t confidence intervals and two-sided paired
tests. The verdicts of `lth tickets` use the non-inferiority test of analysis/noninferiority.py.

Non-finite values are dropped here (a pair is dropped if either side is), and every quantity that
is undefined for what remains is NaN rather than an error: std and CI need n >= 2, the t-test needs
n >= 2 and differences that are not all equal, Wilcoxon needs n >= WILCOXON_MIN_N. With zero sample
variance (often ties: accuracies move in steps of 1/N) the variance is not estimated as zero, it is
not estimated, and the interval is NaN.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy import stats


#: below 6 pairs the exact two-sided Wilcoxon p-value cannot go under 0.05 (minimum 2/2^n)
WILCOXON_MIN_N = 6


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float  # sample standard deviation (ddof=1)
    n: int
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class PairedTest:
    n: int
    mean_diff: float  # mean of sparse - dense
    t_statistic: float
    p_value: float  # paired t-test (scipy.stats.ttest_rel), two-sided
    p_wilcoxon: float  # Wilcoxon signed-rank, NaN when n < WILCOXON_MIN_N


def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    return array[np.isfinite(array)]


def summarise(values: Iterable[float], confidence: float = 0.95, sampling_se: float = 0.0) -> Summary:
    """Mean, sample std, n and the t-distribution CI mean +- t_{(1+conf)/2, n-1} * sqrt(std^2 / n +
    sampling_se^2) (`sampling_se`: the standard error of a measurement on the fixed analysis sample,
    shared by all seeds). n = 0: all NaN; n = 1: the mean, NaN std and CI; zero spread: std 0 and a
    NaN CI (a variance of zero is an estimate that failed, not a certainty)."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(mean, math.nan, 1, math.nan, math.nan)
    std = float(x.std(ddof=1))
    if std <= 1e-12 * max(1.0, abs(mean)):
        return Summary(mean, 0.0, n, math.nan, math.nan)
    sampling_se = sampling_se if math.isfinite(sampling_se) else 0.0
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * math.sqrt(std**2 / n + sampling_se**2)
    return Summary(mean, std, n, mean - half, mean + half)


def paired_test(sparse_values: Sequence[float], dense_values: Sequence[float]) -> PairedTest:
    """Paired by position (= by seed): sparse_values[i] and dense_values[i] come from the same
    seed. Two-sided paired t-test on the differences; Wilcoxon signed-rank (zero differences
    dropped, scipy's default) as well when n >= WILCOXON_MIN_N. If every difference is the same
    (to 1e-12 relative, including all zero) the t-test is undefined and its p-value NaN: no
    significance is claimed."""
    sparse = np.asarray(sparse_values, dtype=float)
    dense = np.asarray(dense_values, dtype=float)
    if sparse.shape != dense.shape:
        raise ValueError(f"paired samples differ in length: {sparse.shape} vs {dense.shape}")
    keep = np.isfinite(sparse) & np.isfinite(dense)
    diff = sparse[keep] - dense[keep]
    n = len(diff)
    mean_diff = float(diff.mean()) if n else math.nan
    t_statistic = p_value = p_wilcoxon = math.nan
    if n >= 2 and not np.allclose(diff, diff[0], rtol=1e-12, atol=1e-15):
        result = stats.ttest_rel(sparse[keep], dense[keep])
        t_statistic, p_value = float(result.statistic), float(result.pvalue)
    if n >= WILCOXON_MIN_N and np.any(diff != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                p_wilcoxon = float(stats.wilcoxon(diff).pvalue)
            except ValueError:
                pass
    return PairedTest(n, mean_diff, t_statistic, p_value, p_wilcoxon)
