"""Can this sweep tell its methods apart on a metric? A test across methods, and what it can detect.

The test: at one common sparsity (the sparsest every method of the configuration reaches, fixed by
the design, not by the data), the per-seed differences from dense (sparse - the seed's own trunk,
so the trunk's seed-to-seed variation cancels) compared across methods by a one-way ANOVA.

The power statement: with the pooled within-method standard deviation sigma of those differences,
the smallest difference between two methods a two-sided two-sample t-test at 5% detects with 80%
power from n seeds each (exact, from the noncentral t), and how many seeds a given difference needs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize, stats

ALPHA, POWER = 0.05, 0.80
MAX_SEEDS = 1000  #: beyond this "seeds needed" is reported as more than it


@dataclass(frozen=True)
class MethodsTest:
    sparsity: float | None
    methods: int
    seeds: int  # per method (the smallest group)
    f_statistic: float
    p_value: float
    sigma: float  # pooled within-method sd of the per-seed differences
    detectable: float  # smallest difference detectable at 80% power with `seeds` seeds (NaN: cannot say)
    why_not: str  # '' when the test ran


def power_two_sample(difference: float, sigma: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided two-sample t-test (n per group) for a true difference."""
    if n < 2 or not sigma > 0:
        return math.nan
    df = 2 * (n - 1)
    noncentrality = abs(difference) / (sigma * math.sqrt(2 / n))
    t = stats.t.ppf(1 - alpha / 2, df)
    power = float(stats.nct.sf(t, df, noncentrality) + stats.nct.cdf(-t, df, noncentrality))
    # scipy's noncentral t gives NaN far in its tail, where the power is 1 to machine precision
    return 1.0 if math.isnan(power) and noncentrality > t else power


def detectable_difference(sigma: float, n: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest true difference detected with `power` from n seeds per method."""
    if n < 2 or not sigma > 0:
        return math.nan
    upper = sigma
    while not power_two_sample(upper, sigma, n, alpha) >= power:  # the bracket: doubled until powerful enough
        upper *= 2
        if upper > 1e3 * sigma:
            return math.nan
    return float(optimize.brentq(lambda d: power_two_sample(d, sigma, n, alpha) - power, 1e-9 * sigma, upper))


def seeds_needed(difference: float, sigma: float, power: float = POWER, alpha: float = ALPHA) -> int | None:
    """Seeds per method for `power` to detect `difference`; None beyond MAX_SEEDS (or no sigma)."""
    if not sigma > 0 or not difference > 0:
        return None
    enough = lambda n: power_two_sample(difference, sigma, n, alpha) >= power  # noqa: E731  (rises with n)
    if not enough(MAX_SEEDS):
        return None
    low, high = 1, MAX_SEEDS  # enough(high), not enough(low): bisect (~10 noncentral-t calls, not up to 1000)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def across_methods(groups: dict[str, Sequence[float]], sparsity: float | None) -> MethodsTest:
    """One-way ANOVA of per-seed differences from dense across methods."""
    values = {method: np.asarray([v for v in vs if math.isfinite(v)], float) for method, vs in groups.items()}
    values = {method: v for method, v in values.items() if len(v)}
    seeds = min((len(v) for v in values.values()), default=0)
    residual_df = sum(len(v) - 1 for v in values.values())
    sigma = math.sqrt(sum(((v - v.mean()) ** 2).sum() for v in values.values()) / residual_df) if residual_df > 0 else math.nan
    base = dict(sparsity=sparsity, methods=len(values), seeds=seeds, sigma=sigma)
    if len(values) < 2:
        return MethodsTest(**base, f_statistic=math.nan, p_value=math.nan, detectable=math.nan, why_not="one method")
    if seeds < 2:
        return MethodsTest(**base, f_statistic=math.nan, p_value=math.nan, detectable=math.nan,
                           why_not="one seed per method: no spread between seeds to test against")
    if not sigma > 0:
        return MethodsTest(**base, f_statistic=math.nan, p_value=math.nan, detectable=math.nan,
                           why_not="no spread between seeds (ties)")
    result = stats.f_oneway(*values.values())
    return MethodsTest(**base, f_statistic=float(result.statistic), p_value=float(result.pvalue),
                       detectable=detectable_difference(sigma, seeds), why_not="")
