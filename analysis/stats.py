"""Statistics across seeds: summaries with t confidence intervals, paired sparse-vs-dense tests,
and the per-method, per-round table `lth tickets` prints.

Non-finite values are dropped (a pair is dropped if either side is), and every quantity that is
undefined for what remains is NaN rather than an error: std and CI need n >= 2, the t-test needs
n >= 2 and differences that are not all equal, Wilcoxon needs n >= WILCOXON_MIN_N.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis.verdicts import higher_is_better, no_worse

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


def summarise(values: Iterable[float], confidence: float = 0.95) -> Summary:
    """Mean, sample std, n and the t-distribution CI mean +- t_{(1+conf)/2, n-1} * std / sqrt(n).
    n = 0: all NaN; n = 1: the mean, NaN std and CI; zero spread: a zero-width CI at the mean."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(mean, math.nan, 1, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
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


def ticket_table(
    frame: pd.DataFrame,
    metric: str,
    *,
    higher: bool | None = None,
    tolerance: float = 0.0,
    relative: bool = False,
    confidence: float = 0.95,
    by: Sequence[str] = ("method",),
) -> pd.DataFrame:
    """One row per (method, round) from a tidy frame with columns method, seed, round, sparsity,
    `metric` and `dense_<metric>` (the seed's trunk value), one row per seed.

    Columns: the group keys, round, sparsity (mean over seeds), n, mean, std, ci_low, ci_high of
    the metric; dense_mean; diff_mean, diff_ci_low, diff_ci_high of the paired difference
    sparse - dense; p_value (paired t) and p_wilcoxon; `ticket`: the mean is no worse than the
    dense mean within tolerance (point estimate); `confident_ticket`: even the CI bound on the
    worse side of the difference is within tolerance (NaN CIs, e.g. one seed, are never
    confident). `higher` defaults to the metric's registered direction.
    """
    higher = higher_is_better(metric) if higher is None else higher
    dense_column = f"dense_{metric}"
    missing = [c for c in (*by, "seed", "round", "sparsity", metric, dense_column) if c not in frame.columns]
    if missing:
        raise KeyError(f"ticket_table needs columns {missing}")
    rows = []
    for keys, group in frame.sort_values([*by, "round", "seed"]).groupby([*by, "round"], sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        values, dense = group[metric].to_numpy(float), group[dense_column].to_numpy(float)
        summary = summarise(values, confidence)
        dense_summary = summarise(dense, confidence)
        keep = np.isfinite(values) & np.isfinite(dense)
        diff = summarise(values[keep] - dense[keep], confidence)
        test = paired_test(values, dense)
        worst = diff.ci_low if higher else diff.ci_high
        allowance = tolerance * abs(dense_summary.mean) if relative else tolerance
        confident = math.isfinite(worst) and ((-worst if higher else worst) <= allowance)
        rows.append(
            {
                **dict(zip([*by, "round"], keys)),
                "sparsity": float(group["sparsity"].mean()),
                **asdict(summary),
                "dense_mean": dense_summary.mean,
                "diff_mean": diff.mean,
                "diff_ci_low": diff.ci_low,
                "diff_ci_high": diff.ci_high,
                "p_value": test.p_value,
                "p_wilcoxon": test.p_wilcoxon,
                "ticket": no_worse(summary.mean, dense_summary.mean, higher, tolerance, relative),
                "confident_ticket": confident,
            }
        )
    return pd.DataFrame(rows)


def winning_tickets(table: pd.DataFrame, column: str = "ticket", by: Sequence[str] = ("method",)) -> pd.DataFrame:
    """Per group, the row of `ticket_table` with the highest sparsity among those where `column`
    holds; groups with none are left out."""
    passing = table[table[column].astype(bool)]
    if passing.empty:
        return passing
    best = passing.sort_values("sparsity").groupby(list(by), sort=True).tail(1)
    return best.sort_values(list(by)).reset_index(drop=True)
