"""Iterative magnitude pruning (Frankle & Carbin 2019): each round drops `rate` of the surviving
weights with the smallest trained magnitude; the lineage then rewinds and retrains."""
from __future__ import annotations

from trainables.pruning.magnitude import prune_by_magnitude


def next_masks(*, spec, weights, masks):
    return prune_by_magnitude(weights, masks, spec.rate, spec.scope)
