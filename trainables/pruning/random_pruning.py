"""Random pruning (the baseline of Frankle & Carbin and of Chen et al.'s RP): at each round's
target sparsity, weights chosen uniformly at random within each layer. How sparse each layer is:
`distribution: magnitude` copies the per-layer counts of one-shot global magnitude pruning of the
dense trunk at the same sparsity (so only *which* weights differs), `uniform` or `erk` set them."""
from __future__ import annotations

from typing import Literal

import torch

from lth_sweep.trainables.pruning import omp
from lth_sweep.trainables.pruning.base import PruneContext, PruneSpec
from lth_sweep.trainables.pruning.densities import kept_counts
from lth_sweep.trainables.pruning.selection import prune_lowest


class Spec(PruneSpec):
    method: Literal["random"] = "random"
    distribution: Literal["magnitude", "uniform", "erk"] = "magnitude"

    def variant(self) -> str:
        return "" if self.distribution == "magnitude" else f"-{self.distribution}"


def per_layer_kept(ctx: PruneContext) -> dict[str, int]:
    if ctx.spec.distribution == "magnitude":
        return {name: int(mask.sum()) for name, mask in omp.next_masks(ctx).items()}
    shapes = {name: mask.shape for name, mask in ctx.masks.items()}
    return kept_counts(shapes, 1 - ctx.target, ctx.spec.distribution)


def next_masks(ctx: PruneContext):
    kept = per_layer_kept(ctx)
    generator = ctx.generator()
    scores = {name: torch.rand(mask.shape, generator=generator) for name, mask in ctx.masks.items()}
    counts = {name: mask.numel() - kept[name] for name, mask in ctx.masks.items()}
    return prune_lowest(scores, ctx.all_kept(), counts, allow_collapse=True)[0]
