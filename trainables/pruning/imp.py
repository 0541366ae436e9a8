"""Iterative magnitude pruning (Frankle & Carbin 2019): each round drops `rate` of the surviving
weights with the smallest trained magnitude, then the network is rewound and retrained.

Rewinding: to the initialisation (`rewind: init`), to iteration k of dense training (`rewind: k`,
Frankle et al. 2020, "Stabilizing the LTH"), or only the learning-rate schedule (`lr_rewind: true`,
Renda et al. 2020): retrain the pruned network from its trained weights, replaying the schedule
from iteration k.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from lth_sweep.trainables.pruning.base import PruneContext, PruneSpec
from lth_sweep.trainables.pruning.selection import prune_fraction


class Spec(PruneSpec):
    method: Literal["imp"] = "imp"
    lr_rewind: bool = Field(False, description="Renda et al.: keep the trained weights, rewind only the LR schedule")

    def variant(self) -> str:
        return "-lr" if self.lr_rewind else ""

    def retrain_from_trained_weights(self) -> bool:
        return self.lr_rewind


def next_masks(ctx: PruneContext):
    scores = {name: ctx.trained[name].abs() for name in ctx.masks}
    masks, saved = prune_fraction(scores, ctx.masks, ctx.spec.rate, ctx.spec.scope, ctx.spec.allow_layer_collapse)
    ctx.collapse_avoided(saved, "the largest weight")
    return masks

