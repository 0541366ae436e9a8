"""Magnitude pruning of a fraction of the *remaining* weights, globally or layer by layer."""
from __future__ import annotations

import torch

from trainables.pruning.selection import prune_fraction

Masks = dict[str, torch.Tensor]


def prune_by_magnitude(weights: dict[str, torch.Tensor], masks: Masks, fraction: float, scope: str) -> Masks:
    scores = {name: weights[name].abs() for name in masks}
    return prune_fraction(scores, masks, fraction, scope, allow_collapse=True)[0]
