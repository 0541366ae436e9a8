"""Verdicts on a lineage's curves (metric value against sparsity, one point per round) measured
against its dense trunk: the "no worse than dense" comparison and Chen et al.'s regions I/II/III
(the winning tickets and LTH-PASS over seeds: analysis/sweep_verdicts.py).

"No worse than dense within tolerance" is the one comparison everything rests on. With
`relative=False` (default) the tolerance is in the metric's own units: higher-is-better metrics
pass when value >= dense - tolerance, lower-is-better ones when value <= dense + tolerance. With
`relative=True` the allowance is tolerance * |dense| (e.g. 0.02 = "within 2% of dense"). NaN
values never pass. Comparisons allow a slack of 1e-12 (relative to the values' size) so that a value
exactly at the tolerance in decimal (0.89 against 0.90 - 0.01) passes despite binary rounding.
"""
from __future__ import annotations

import math
from fnmatch import fnmatchcase
from typing import Sequence

from lth_sweep.analysis import metrics as registry

Curve = Sequence[tuple[float, float]]


def higher_is_better(metric: str, directions: dict[str, bool] | None = None) -> bool:
    """Direction of `metric`: from `directions` (fnmatch patterns, if given), else the registry."""
    for pattern, higher in (directions or {}).items():
        if fnmatchcase(metric, pattern):
            return higher
    try:
        return registry.higher_is_better(metric)
    except registry.UnknownMetric:
        raise KeyError(f"no direction known for metric {metric!r}; pass directions={{{metric!r}: True/False}}") from None


def _allowance(dense_value: float, tolerance: float, relative: bool) -> float:
    allowance = tolerance * abs(dense_value) if relative else tolerance
    return allowance + 1e-12 * max(1.0, abs(dense_value))


def degradation(value: float, dense_value: float, higher_is_better: bool) -> float:
    """How much worse than dense (positive = worse, negative = better), in the metric's units."""
    return dense_value - value if higher_is_better else value - dense_value


def no_worse(value: float, dense_value: float, higher_is_better: bool, tolerance: float = 0.0, relative: bool = False) -> bool:
    if not (math.isfinite(value) and math.isfinite(dense_value)):
        return False
    return degradation(value, dense_value, higher_is_better) <= _allowance(dense_value, tolerance, relative)


def regions(
    curve: Curve,
    dense_value: float,
    higher_is_better: bool,
    tolerance: float = 0.0,
    relative: bool = False,
    collapse: float | None = None,
    chance: float | None = None,
) -> list[tuple[float, str]]:
    """(sparsity, region) for every point, sorted by sparsity. As Chen et al. draw them:

    - "I"   winning tickets: no worse than dense within tolerance (and not in III);
    - "III" collapsed: every point from the first sparsity s* on such that *all* points at
            sparsity >= s* are collapsed, a point being collapsed when it is worse than dense by
            more than `collapse` (same units as tolerance: absolute, or relative to |dense| with
            `relative`), or at/below `chance` for higher-is-better metrics (at/above it for
            lower-is-better ones), or NaN (a run that diverged);
    - "II"  degraded: everything else (worse than the tolerance, not yet collapsed for good).

    III is a suffix of the curve, so a dip that recovers stays II. With neither `collapse` nor
    `chance` only NaN points can collapse. Typical settings: accuracies chance=1/num_classes and
    collapse=0.1; calibration errors collapse=1.0 with relative=True (twice the dense error).
    """
    points = sorted(curve, key=lambda point: point[0])

    def collapsed(value: float) -> bool:
        if not math.isfinite(value):
            return True
        if collapse is not None and degradation(value, dense_value, higher_is_better) > _allowance(dense_value, collapse, relative):
            return True
        if chance is not None:
            return value <= chance if higher_is_better else value >= chance
        return False

    first_collapsed = len(points)
    while first_collapsed > 0 and collapsed(points[first_collapsed - 1][1]):
        first_collapsed -= 1
    labels = []
    for i, (sparsity, value) in enumerate(points):
        if i >= first_collapsed:
            label = "III"
        elif no_worse(value, dense_value, higher_is_better, tolerance, relative):
            label = "I"
        else:
            label = "II"
        labels.append((sparsity, label))
    return labels
