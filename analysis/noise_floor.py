"""The noise floor: how far a second dense network, differing only in its SGD noise, moves on a
metric. It is the reference a drift is read against, and it is descriptive: the margin a verdict
uses (how much worse still counts as matching) is fixed before the data (`margin` below), never
widened by measured noise; the noise goes into the verdicts' intervals (analysis/noninferiority.py).

- a **consistency** metric (the trunk scores 1 against itself): primarily the dense TWIN of each
  trunk (same init, another data order: the instability analysis of Frankle et al. 2020), measured
  against the trunk's reference and logged on the trunk's run as `twin/<metric>`; secondly another
  seed's trunk measured against it (`floor/<metric>`, a ring over the configuration's seeds: with 2
  seeds that is one pair measured both ways). The floor is the drift 1 - mean agreement;
- a metric compared with **dense**: the spread (sample std) of the trunks' own values across seeds,
  combined with the sampling error of the analysis sample (`se/<metric>`, where the measurement
  logs one): sqrt(std_seeds^2 + se^2).

Floors are per trunk configuration: the caller passes one configuration's rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lth_sweep.analysis import metrics as registry
from lth_sweep.analysis.metrics import FLOOR_PREFIX, SE_PREFIX, TWIN_PREFIX



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


def pairs_of_a_ring(trunks: int) -> int:
    """Distinct pairs the other-seed ring measures: n for n >= 3 seeds, 1 for 2 (measured both ways)."""
    return 1 if trunks == 2 else trunks


def _consistency_floor(frame: pd.DataFrame, metric: str, prefix: str) -> Floor | None:
    agreement = _per_trunk(frame, f"dense/{prefix}{metric}")
    if not len(agreement):
        return None
    if prefix == TWIN_PREFIX:
        source = f"dense twin (same init, other data order) of {len(agreement)} trunk(s)"
    else:
        pairs = pairs_of_a_ring(len(agreement))
        source = f"another seed's trunk, from {pairs} pair{'s' if pairs > 1 else ''} of seeds"
    return Floor(metric, float(1 - agreement.mean()), len(agreement), source, (float(agreement.min()), float(agreement.max())))


def floors(frame: pd.DataFrame, metric: str) -> list[Floor]:
    """Every floor measured for `metric`, the primary first: for a consistency metric the dense
    twin, then another seed's trunk; for a dense-reference metric the seeds' spread."""
    if registry.is_consistency(metric):
        found = [f for f in (_consistency_floor(frame, metric, p) for p in (TWIN_PREFIX, FLOOR_PREFIX)) if f]
        return found or [Floor(metric, math.nan, 0, "not measured (needs a dense twin or 2+ seeds)")]
    return [_dense_floor(frame, metric)]


def floor(frame: pd.DataFrame, metric: str) -> Floor:
    """The primary noise floor of `metric` over the trunks of `frame` (the tidy table of load_sweep)."""
    return floors(frame, metric)[0]


def _dense_floor(frame: pd.DataFrame, metric: str) -> Floor:
    dense = _per_trunk(frame, f"dense/{metric}")
    se = _per_trunk(frame, f"dense/{SE_PREFIX}{metric}")
    if len(dense) >= 2 and not len(se) and np.all(dense == dense[0]):
        # e.g. corrupt/mce, the trunk's own errors over themselves: 1 by construction, not seeds that agree
        return Floor(metric, math.nan, len(dense), f"not measured: every trunk scores exactly {dense[0]:g} (by construction or ties)")
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
class Margin:
    value: float  # in the metric's units (a relative default is already multiplied by |dense|)
    source: str  # "registry default", "user (--margin)", with "x |dense|" where relative


def margin(metric: str, dense_value: float, override: float | None = None, relative: bool = False) -> Margin:
    """How much worse than the reference still counts as matching, fixed before the data: the
    user's `--margin`, else the registry's per-metric default (analysis/metrics.py). Never the
    measured noise: a margin that grows with the noise turns "no worse than dense" into "not
    detectably worse", and fewer images or seeds would then give sparser tickets."""
    entry = registry.lookup(metric)
    scale_by_dense = relative if override is not None else entry.relative
    base = override if override is not None else entry.margin
    value = base * abs(dense_value) if scale_by_dense and math.isfinite(dense_value) else base
    source = "user (--margin)" if override is not None else "registry default"
    if scale_by_dense:
        source += f", {base:g} x |dense|"
    return Margin(value, source)


def in_floor_units(degradation: float, measured: Floor) -> float | None:
    """How many floors worse than the reference (None where the floor is not measured)."""
    if not measured.measured or not math.isfinite(degradation):
        return None
    return degradation / measured.value
