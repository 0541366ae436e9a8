"""Confidence claims across one method's metrics, with the family-wise error controlled.

Within one metric the rounds are a fixed sequence: the walk claims round k only when every round up
to it is claimed, each at the metric's level, which controls the error over that metric's rounds
without adjustment (a false claim needs the first false one, and the walk tests it at the level).

Across a method's metrics (the family: everything `lth tickets` claims about that method) the
levels come from Holm's procedure in its graphical form for sequences (Bretz et al. 2009, "A
graphical approach to sequentially rejective multiple test procedures"): each of the m metrics
starts with alpha / m; a metric whose whole sequence of rounds is claimed hands its level on, in
equal parts, to the metrics still open, which walk on at their larger level; repeated until nothing
changes. With one round per metric this is exactly Holm's step-down procedure.
"""
from __future__ import annotations

from typing import Sequence


def claimed_depth(p_values: Sequence[float], level: float) -> int:
    """How many leading rounds the fixed-sequence walk claims at `level` (NaN p: not claimable)."""
    depth = 0
    for p in p_values:
        if not p < level:  # NaN compares False: the walk stops
            break
        depth += 1
    return depth


def holm_sequences(chains: dict[str, Sequence[float]], alpha: float) -> dict[str, tuple[int, float]]:
    """metric -> (rounds claimed, the level its walk ended at), for the one-sided p-values of each
    metric's rounds in walking order."""
    open_metrics = set(chains)
    levels = {metric: alpha / len(chains) for metric in chains} if chains else {}
    while True:
        finished = {m for m in open_metrics if claimed_depth(chains[m], levels[m]) == len(chains[m])}
        if not finished or finished == open_metrics:
            break
        released = sum(levels[m] for m in finished)
        open_metrics -= finished
        for metric in open_metrics:
            levels[metric] += released / len(open_metrics)
    return {metric: (claimed_depth(chain, levels[metric]), levels[metric]) for metric, chain in chains.items()}
