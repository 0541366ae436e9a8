"""One-shot magnitude pruning: the dense trunk's trained weights pruned straight to the round's
target sparsity (no intermediate rounds), then rewound and retrained. Each round is a separate
one-shot run at a higher sparsity, so OMP and IMP are compared at the same sparsities."""
from __future__ import annotations

from typing import Literal

from lth_sweep.trainables.pruning.base import PruneContext, PruneSpec
from lth_sweep.trainables.pruning.selection import prune_to_sparsity


class Spec(PruneSpec):
    method: Literal["omp"] = "omp"


def next_masks(ctx: PruneContext):
    scores = {name: ctx.dense[name].abs() for name in ctx.masks}
    masks, saved = prune_to_sparsity(scores, ctx.all_kept(), ctx.target, ctx.spec.scope, ctx.spec.allow_layer_collapse)
    ctx.collapse_avoided(saved, "the largest weight")
    return masks
