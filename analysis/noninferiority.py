"""Is a sparse network no worse than its dense trunk? The paired difference over seeds, its
interval, and the one-sided non-inferiority test, with the margin fixed before the data.

Per seed i the sparse network and its own trunk are scored on the same images: d_i = sparse_i -
dense_i (oriented so that positive is better). Two sources of noise enter the mean difference:

- the seeds: s_d^2 / n, estimated from the n per-seed differences, with n - 1 degrees of freedom;
- the analysis sample: the images are the same for every seed, so this error does not average out
  over seeds. Each seed's measurement logs the PAIRED standard error of its difference
  (`se_diff/<metric>`: McNemar's discordant pairs for accuracies, a paired bootstrap otherwise);
  their root mean square is taken as the sampling error of the mean, in full. It is treated as
  known (infinite degrees of freedom: it rests on hundreds of images).

The two are added, se^2 = s_d^2 / n + se_sampling^2, and the Welch-Satterthwaite degrees of
freedom of that sum are df = se^4 / ((s_d^2 / n)^2 / (n - 1)). The test of H0: mean d <= -margin
against H1: mean d > -margin is one-sided at `alpha`: p = P(T_df >= (mean d + margin) / se), and
the interval printed is the two-sided (1 - 2 alpha) one, whose lower end is the test's bound: p <
alpha exactly when the lower end is above -margin.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from lth_sweep.analysis.lineage_verdicts import no_worse

ALPHA = 0.05  #: one-sided level of the non-inferiority test

#: With 2 seeds the spread between seeds rests on 1 degree of freedom and is as likely to be a tie as
#: a measurement; 3 is the least that can support a confidence claim.
MIN_SEEDS_FOR_CONFIDENCE = 3


@dataclass(frozen=True)
class PairedDifference:
    """sparse - dense over seeds, oriented so that positive is better (for a lower-is-better
    metric, dense - sparse)."""

    n: int
    mean: float
    seeds_sd: float  # sd of the per-seed differences (ddof=1); NaN for n < 2
    sampling_se: float  # paired sampling error of the mean difference (0 when none was logged)
    se: float  # sqrt(seeds_sd^2 / n + sampling_se^2)
    df: float  # Welch-Satterthwaite
    low: float  # two-sided (1 - 2 alpha) interval: low is the one-sided bound of the test
    high: float
    p_value: float  # one-sided non-inferiority p against -margin
    margin: float
    not_confident_because: str  # '' when a confident claim is possible

    @property
    def matches(self) -> bool:
        """The point verdict: the mean difference is no worse than -margin."""
        return no_worse(self.mean, 0.0, True, self.margin)  # the one comparison, with its rounding slack

    @property
    def confident(self) -> bool:
        return not self.not_confident_because and self.p_value < ALPHA


def welch_satterthwaite_df(seeds_variance_of_mean: float, n: int, sampling_variance: float) -> float:
    """Degrees of freedom of seeds_variance_of_mean + sampling_variance, the first estimated on n - 1
    df, the second known."""
    if n < 2:
        return math.nan
    if seeds_variance_of_mean <= 0:
        return math.inf
    total = seeds_variance_of_mean + sampling_variance
    return total**2 * (n - 1) / seeds_variance_of_mean**2


def paired_difference(
    differences: Sequence[float], sampling_se: Sequence[float] | float = 0.0, margin: float = 0.0, alpha: float = ALPHA
) -> PairedDifference:
    """`differences`: per-seed d_i, oriented (positive is better), all finite; `sampling_se`: the
    paired sampling error of each (or one number for all)."""
    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n == 0:
        return PairedDifference(0, *(math.nan,) * 4, math.nan, math.nan, math.nan, math.nan, margin, "no seed measured")
    se_each = np.broadcast_to(np.asarray(sampling_se, dtype=float), d.shape)
    se_each = np.where(np.isfinite(se_each), se_each, 0.0)
    sampling = float(np.sqrt(np.mean(se_each**2)))
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n >= 2 else math.nan
    tie = n >= 2 and sd <= 1e-12 * max(1.0, abs(mean))
    reason = ""
    if n < MIN_SEEDS_FOR_CONFIDENCE:
        reason = f"{n} seed(s): confidence needs {MIN_SEEDS_FOR_CONFIDENCE}+"
    elif tie:
        reason = "no spread across seeds (ties): the variance between seeds cannot be estimated"
    if n < 2 or tie:
        return PairedDifference(n, mean, 0.0 if tie else math.nan, sampling, math.nan, math.nan, math.nan, math.nan, math.nan,
                                margin, reason)
    seeds_var = sd**2 / n
    se = math.sqrt(seeds_var + sampling**2)
    df = welch_satterthwaite_df(seeds_var, n, sampling**2)
    t = float(stats.t.ppf(1 - alpha, df))
    p = float(stats.t.sf((mean + margin) / se, df))
    return PairedDifference(n, mean, sd, sampling, se, df, mean - t * se, mean + t * se, p, margin, reason)
