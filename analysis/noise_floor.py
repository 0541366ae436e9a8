"""The noise floor: how far a second dense network, differing only in its seed, moves on a metric.

"Grad-CAM rank correlation 0.65 with the trunk" means nothing until one knows what two equally good
dense networks score against each other; "accuracy 0.4 points below dense" means nothing until one
knows how much dense accuracy itself varies with the seed. The floor is that reference:

- a **consistency** metric (the trunk scores 1 against itself): each trunk is measured against the
  reference of another trunk of the same configuration and a different seed, logged on the trunk's
  run as `floor/<metric>` (analysis/actors.py); the floor is the drift 1 - mean of those values;
- a metric compared with **dense**: the spread (sample std) of the trunks' own values across seeds,
  combined with the sampling error of the analysis sample (`se/<metric>`, where the measurement
  logs one): sqrt(std_seeds^2 + se^2).

The verdicts' tolerance for a metric is its floor when the floor is measured, but never below the
registry's per-metric default (analysis/metrics.py), the smallest difference worth a verdict;
`lth tickets --tolerance METRIC=VALUE` overrides both. A sweep with one seed has no dense-vs-dense spread: its floor falls back to the sampling
error alone, or to the default, and the output says which.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import metrics as registry

FLOOR_PREFIX = "floor/"
SE_PREFIX = "se/"


@dataclass(frozen=True)
class Floor:
    metric: str
    value: float  # drift a second dense seed shows, in the metric's units (NaN: not measured)
    trunks: int  # dense networks it was measured on
    source: str  # how it was measured, for a person
    spread: tuple[float, float] | None = None  # (low, high) for a figure's band

    @property
    def measured(self) -> bool:
        return math.isfinite(self.value) and self.value > 0


def _per_trunk(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns or "trunk" not in frame.columns:
        return np.array([])
    values = frame.drop_duplicates("trunk")[column].to_numpy(float)
    return values[np.isfinite(values)]


def floor(frame: pd.DataFrame, metric: str) -> Floor:
    """The noise floor of `metric` over the trunks of `frame` (the tidy table of load_sweep)."""
    if registry.is_consistency(metric):
        pairs = _per_trunk(frame, f"dense/{FLOOR_PREFIX}{metric}")
        if not len(pairs):
            return Floor(metric, math.nan, 0, "not measured (needs 2+ seeds)")
        return Floor(
            metric, float(1 - pairs.mean()), len(pairs), f"dense vs dense over {len(pairs)} trunk pair(s)",
            (float(pairs.min()), float(pairs.max())),
        )
    dense = _per_trunk(frame, f"dense/{metric}")
    se = _per_trunk(frame, f"dense/{SE_PREFIX}{metric}")
    seeds_var = float(dense.var(ddof=1)) if len(dense) >= 2 else math.nan
    sampling_var = float((se**2).mean()) if len(se) else math.nan
    parts = [v for v in (seeds_var, sampling_var) if math.isfinite(v)]
    if not parts:
        return Floor(metric, math.nan, len(dense), "not measured (needs 2+ seeds or a sampling error)")
    value = math.sqrt(sum(parts))
    source = " + ".join(
        name for name, v in (("spread of %d dense seeds" % len(dense), seeds_var), ("sampling error", sampling_var))
        if math.isfinite(v)
    )
    mean = float(dense.mean()) if len(dense) else math.nan
    return Floor(metric, value, len(dense), source, (mean - value, mean + value) if math.isfinite(mean) else None)


@dataclass(frozen=True)
class Tolerance:
    value: float  # in the metric's units (a relative default is already multiplied by |dense|)
    source: str  # "noise floor", "default", "user"


def tolerance(metric: str, measured: Floor, dense_value: float, override: float | None = None) -> Tolerance:
    """How much worse than the reference still passes: the user's; else the floor, but never below
    the registry's default for the metric, which is the smallest difference worth a verdict (a
    floor from 2-3 seeds can come out far too small: seeds that tie give 0, and quantised measures
    such as a top-3 Jaccard over 9 classes move in steps of ~0.05)."""
    if override is not None:
        return Tolerance(override, "user")
    entry = registry.lookup(metric)
    scale = abs(dense_value) if entry.relative and math.isfinite(dense_value) else 1.0
    default = entry.tolerance * scale
    if measured.measured and measured.value >= default:
        return Tolerance(measured.value, "noise floor")
    if measured.measured:
        return Tolerance(default, f"default (the noise floor, {measured.value:.3g}, is below it)")
    return Tolerance(default, "default")


def in_floor_units(degradation: float, measured: Floor) -> float | None:
    """How many floors worse than the reference (None where the floor is not measured)."""
    if not measured.measured or not math.isfinite(degradation):
        return None
    return degradation / measured.value


@dataclass(frozen=True)
class Separation:
    """Can this sweep's samples tell its methods apart on a metric? Signal: the spread (std) of
    the methods' mean values, averaged over rounds; noise: the spread of one method's value over
    seeds (pooled) and the sampling error of the analysis sample. Below RESOLVABLE the measure is
    reported as "not resolvable at this sample size" rather than as verdicts."""

    metric: str
    signal: float
    seed_noise: float
    sampling_noise: float

    @property
    def noise(self) -> float:
        parts = [v for v in (self.seed_noise, self.sampling_noise) if math.isfinite(v)]
        return math.sqrt(sum(v * v for v in parts)) if parts else math.nan

    @property
    def ratio(self) -> float:
        return self.signal / self.noise if self.noise > 0 else math.nan

    @property
    def resolvable(self) -> bool | None:
        """None when it cannot be told (one method, or one seed and no sampling error)."""
        return None if not math.isfinite(self.ratio) else self.ratio >= RESOLVABLE


#: Methods whose means differ by less than one noise standard deviation cannot be ranked by a
#: sweep of this size: the order of two of them flips with the seed about a third of the time.
RESOLVABLE = 1.0


def separation(frame: pd.DataFrame, metric: str) -> Separation:
    values = frame[["label", "round", "seed", metric]].dropna()
    by_round = values.groupby("round")
    signals = [g.groupby("label")[metric].mean().std(ddof=1) for _, g in by_round if g["label"].nunique() > 1]
    variances = values.groupby(["label", "round"])[metric].var(ddof=1).dropna()
    se_column = f"{SE_PREFIX}{metric}"
    se = frame[se_column].to_numpy(float) if se_column in frame.columns else np.array([])
    se = se[np.isfinite(se)]
    return Separation(
        metric,
        float(np.mean(signals)) if signals else math.nan,
        float(math.sqrt(variances.mean())) if len(variances) else math.nan,
        float(math.sqrt((se**2).mean())) if len(se) else math.nan,
    )
