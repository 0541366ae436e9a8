"""Statistics across seeds: summaries with t confidence intervals, paired sparse-vs-dense tests,
and the per-method, per-round table `lth tickets` prints.

Non-finite values are dropped (a pair is dropped if either side is), and every quantity that is
undefined for what remains is NaN rather than an error: std and CI need n >= 2, the t-test needs
n >= 2 and differences that are not all equal, Wilcoxon needs n >= WILCOXON_MIN_N.

Confidence is never claimed from fewer than MIN_SEEDS_FOR_CONFIDENCE seeds, nor from values with no
spread at all: with zero sample variance (often ties: accuracies move in steps of 1/N) the variance
is not estimated as zero, it is not estimated, and the interval is NaN. Every interval includes the
sampling error of the analysis sample where the measurement logged one (`se/<metric>`): the sample is
the same for every seed, so that error does not shrink with more seeds and is added in full.
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

#: With 2 seeds the t-interval has 1 degree of freedom (t = 12.7 for 95%) and its one spread estimate
#: is as likely to be a tie as a measurement; 3 is the least that can support a confidence claim.
MIN_SEEDS_FOR_CONFIDENCE = 3


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


def why_not_confident(n: int, std: float) -> str:
    """'' when n values with sample std `std` can support a confidence claim, else the reason."""
    if n < MIN_SEEDS_FOR_CONFIDENCE:
        return f"{n} seed(s): confidence needs {MIN_SEEDS_FOR_CONFIDENCE}+"
    if not std > 0:
        return "no spread across seeds (ties): the variance cannot be estimated"
    return ""


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


def _sampling_se(group: pd.DataFrame, column: str) -> float:
    """Root mean square of a logged standard error over the group's rows (0 where none was logged)."""
    if column not in group.columns:
        return 0.0
    se = group[column].to_numpy(float)
    se = se[np.isfinite(se)]
    return float(np.sqrt((se**2).mean())) if len(se) else 0.0


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
    `metric` and `dense_<metric>` (the seed's trunk value), one row per seed; optionally
    `se_<metric>` and `dense_se_<metric>`, the sampling errors of each value.

    Columns: the group keys, round, sparsity (mean over seeds), n, mean, std, ci_low, ci_high of
    the metric; dense_mean; diff_mean, diff_std, diff_ci_low, diff_ci_high of the paired difference
    sparse - dense (its CI includes both sides' sampling errors); p_value (paired t) and p_wilcoxon;
    `ticket`: the mean is no worse than the dense mean within tolerance (point estimate);
    `confident_ticket`: even the CI bound on the worse side of the difference is within tolerance,
    never with fewer than MIN_SEEDS_FOR_CONFIDENCE seeds or zero spread (`not_confident_because`
    says why). `higher` defaults to the metric's registered direction.
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
        se, dense_se = _sampling_se(group, f"se_{metric}"), _sampling_se(group, f"dense_se_{metric}")
        summary = summarise(values, confidence, se)
        dense_summary = summarise(dense, confidence, dense_se)
        keep = np.isfinite(values) & np.isfinite(dense)
        diff = summarise(values[keep] - dense[keep], confidence, math.hypot(se, dense_se))
        test = paired_test(values, dense)
        reason = why_not_confident(diff.n, diff.std)
        p_value = test.p_value if diff.n >= MIN_SEEDS_FOR_CONFIDENCE else math.nan  # a t-test on 1 df claims too much
        worst = diff.ci_low if higher else diff.ci_high
        allowance = tolerance * abs(dense_summary.mean) if relative else tolerance
        confident = not reason and math.isfinite(worst) and ((-worst if higher else worst) <= allowance)
        rows.append(
            {
                **dict(zip([*by, "round"], keys)),
                "sparsity": float(group["sparsity"].mean()),
                **asdict(summary),
                "sampling_se": se,
                "dense_mean": dense_summary.mean,
                "diff_mean": diff.mean,
                "diff_std": diff.std,
                "diff_ci_low": diff.ci_low,
                "diff_ci_high": diff.ci_high,
                "p_value": p_value,
                "p_wilcoxon": test.p_wilcoxon,
                "ticket": no_worse(summary.mean, dense_summary.mean, higher, tolerance, relative),
                "confident_ticket": confident,
                "not_confident_because": reason,
            }
        )
    return pd.DataFrame(rows)


def winning_tickets(table: pd.DataFrame, column: str = "ticket", by: Sequence[str] = ("method",)) -> pd.DataFrame:
    """Per group, the row of `ticket_table` at the winning ticket: the sparsest round reached while
    `column` holds for every round up to it (Frankle & Carbin); groups whose first round fails are
    left out."""
    winners = []
    for _, group in table.sort_values([*by, "sparsity"]).groupby(list(by), sort=True):
        passing = group[column].astype(bool).to_numpy()
        run = len(passing) if passing.all() else int(np.argmin(passing))
        if run:
            winners.append(group.iloc[run - 1])
    if not winners:
        return table.iloc[0:0]
    return pd.DataFrame(winners).sort_values(list(by)).reset_index(drop=True)
