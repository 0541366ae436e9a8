"""One round of one method in one configuration: what its seeds say against their trunks.

Nothing is dropped silently. Every seed of the configuration is accounted for:
- a seed whose network logged a non-finite value (`nonfinite/<metric>`: it collapsed, e.g. a
  flatness radius of NaN) FAILS the round: a collapsed network is not a matching one;
- a seed with no value (its lineage has not reached the round, failed before it, or its analysis
  has not arrived) or whose reference is missing makes the round UNDETERMINED, with the reason;
- the metric at one of its bounds for every network, sparse and dense alike, is UNDETERMINED
  (saturated: nothing separates them).
Otherwise the round MATCHES or FAILS on the mean paired difference against the margin
(analysis/noninferiority.py), and carries its interval and one-sided p.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lth_sweep.analysis import metrics as registry
from lth_sweep.analysis.metrics import DENSE_PREFIX, FLOOR_PREFIX, NONFINITE_PREFIX, SE_DIFF_PREFIX, SE_PREFIX, TWIN_PREFIX
from lth_sweep.analysis.noninferiority import PairedDifference, paired_difference

MATCHES, FAILS, UNDETERMINED = "matches", "fails", "undetermined"


@dataclass(frozen=True)
class Reference:
    """What the sparse values of one metric are compared with, per seed: a column of the frame
    (`dense/<metric>`, or for a consistency metric the dense twin's or another seed's agreement with
    the trunk), or a constant (1: the trunk against itself)."""

    column: str | None
    constant: float | None
    description: str


@dataclass
class RoundEvidence:
    round: int
    sparsity: float
    status: str  # MATCHES, FAILS or UNDETERMINED
    reason: str  # why, for FAILS by collapse and UNDETERMINED
    seeds: list[int] = field(default_factory=list)  # the seeds used
    values: list[float] = field(default_factory=list)  # the sparse values, per seed used
    references: list[float] = field(default_factory=list)  # their references, per seed
    difference: PairedDifference | None = None
    sampling_note: str = ""
    speed_p_value: float | None = None  # the winning-ticket rule's second criterion (analysis/winning.py); None: none

    @property
    def p_value(self) -> float:
        """The one-sided p of the round's claim; NaN (never confident) unless it matches. With a
        second criterion, the larger of the two (an intersection-union test)."""
        if self.difference is None or self.status != MATCHES or self.difference.not_confident_because:
            return math.nan  # no confidence from fewer than 3 seeds or seeds that tie
        if self.speed_p_value is None:
            return self.difference.p_value
        pair = (self.difference.p_value, self.speed_p_value)
        return max(pair) if all(math.isfinite(p) for p in pair) else math.nan  # not confident on one: on neither


def reference_for(frame: pd.DataFrame, metric: str) -> Reference:
    if not registry.is_consistency(metric):
        return Reference(f"{DENSE_PREFIX}{metric}", None, "the seed's own dense trunk")
    for column, description in (
        (f"{DENSE_PREFIX}{TWIN_PREFIX}{metric}", "the dense twin's agreement with the trunk (same init, other data order)"),
        (f"{DENSE_PREFIX}{FLOOR_PREFIX}{metric}", "another seed's trunk's agreement with the trunk (no dense twin measured)"),
    ):
        if column in frame.columns and frame[column].notna().any():
            return Reference(column, None, description)
    return Reference(None, 1.0, "the trunk itself, 1 (no dense twin nor second seed measured)")


def at_one_bound(metric: str, values) -> bool:
    bounds = registry.lookup(metric).bounds
    values = [float(v) for v in values]
    if bounds is None or not values:
        return False
    return any(all(abs(v - bound) <= 1e-9 for v in values) for bound in bounds)


def _sampling(group: pd.DataFrame, metric: str, consistency: bool) -> tuple[np.ndarray, str]:
    """Per-row paired sampling error of (sparse - reference), and a note on what it is."""
    def column(name):
        return group[name].to_numpy(float) if name in group.columns else np.full(len(group), np.nan)

    option = registry.lookup(metric).sampling_error_option
    none_logged = "no sampling error logged" + (f" ({option} measures one)" if option else "")
    if consistency:
        se = column(f"{SE_PREFIX}{metric}")
        return se, "" if np.isfinite(se).all() else none_logged
    paired = column(f"{SE_DIFF_PREFIX}{metric}")
    if np.isfinite(paired).all():
        return paired, ""
    unpaired = np.hypot(column(f"{SE_PREFIX}{metric}"), column(f"{DENSE_PREFIX}{SE_PREFIX}{metric}"))
    if np.isfinite(unpaired).all():
        return unpaired, "unpaired sampling error (no paired one logged)"
    return np.zeros(len(group)), none_logged


def evidence(
    group: pd.DataFrame, metric: str, expected_seeds: list[int], reference: Reference, margin: float,
    higher: bool, round_index: int, sparsity: float,
) -> RoundEvidence:
    """The verdict of one round; `group` holds the method's rows of that round (one per seed)."""
    rows = group.drop_duplicates("seed").set_index("seed")
    collapsed_column = f"{NONFINITE_PREFIX}{metric}"
    flags = rows[collapsed_column] if collapsed_column in rows.columns else pd.Series(dtype=object)
    collapsed = [s for s in expected_seeds if s in flags.index and _flagged(flags[s])]
    if collapsed:
        return RoundEvidence(round_index, sparsity, FAILS, f"seed(s) {_seeds(collapsed)} collapsed (non-finite {metric})")
    value = rows[metric] if metric in rows.columns else pd.Series(dtype=float)
    if reference.column is None:
        ref = pd.Series(reference.constant, index=rows.index)
    else:
        ref = rows[reference.column] if reference.column in rows.columns else pd.Series(dtype=float)
    missing = [s for s in expected_seeds if not (s in value.index and math.isfinite(value.get(s, math.nan)))]
    no_reference = [s for s in expected_seeds if s not in missing and not math.isfinite(ref.get(s, math.nan))]
    if missing or no_reference:
        parts = ([f"seed(s) {_seeds(missing)} not measured"] if missing else []) + (
            [f"seed(s) {_seeds(no_reference)} without a reference value"] if no_reference else [])
        return RoundEvidence(round_index, sparsity, UNDETERMINED, "; ".join(parts))
    values = [float(value[s]) for s in expected_seeds]
    references = [float(ref[s]) for s in expected_seeds]
    if at_one_bound(metric, values + references):
        return RoundEvidence(round_index, sparsity, UNDETERMINED, f"saturated: every network at a bound of {metric}",
                             list(expected_seeds), values, references)
    sign = 1.0 if higher else -1.0
    differences = [sign * (v - r) for v, r in zip(values, references)]
    sampling, note = _sampling(rows.loc[expected_seeds], metric, registry.is_consistency(metric))
    difference = paired_difference(differences, np.where(np.isfinite(sampling), sampling, 0.0), margin)
    return RoundEvidence(
        round_index, sparsity, MATCHES if difference.matches else FAILS, "", list(expected_seeds), values, references,
        difference, note,
    )


def _flagged(flag) -> bool:
    try:
        return bool(flag == 1)  # True, 1, 1.0 and numpy's; NaN (not flagged) is False
    except (TypeError, ValueError):
        return False


def _seeds(seeds) -> str:
    return ", ".join(str(s) for s in seeds)
