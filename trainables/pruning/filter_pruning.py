"""Filter pruning, the "structured" sparsity of von Rad & Seuffert 2024 (arXiv 2409.19727): whole
output channels (conv filters, linear output neurons) with the smallest L1 (or L2) norm are removed,
iteratively (rate x remaining channels per round, from the last ticket) or one-shot (from the dense
trunk to round(target x channels)). See `structured.py` for scoring and counting."""
from __future__ import annotations

from typing import ClassVar, Literal

from lth_sweep.trainables.pruning.base import PruneContext
from lth_sweep.trainables.pruning.structured import StructuredSpec, next_structured_masks


class Spec(StructuredSpec):
    method: Literal["filter"] = "filter"
    # A removed filter takes its bias and its norm layer's scale and shift with it, so the channel
    # outputs exactly zero, as if the filter were cut out of the network.
    removes_output_channels: ClassVar[bool] = True


def next_masks(ctx: PruneContext):
    # The model's last layer outputs the class logits: removing one of its "filters" deletes a
    # class, so its outputs are exempt. Named from the model, not ctx.masks, so that an excluded
    # classifier does not shield the hidden layer before it.
    classifier = ctx.model.prunable_weights()[-1]
    return next_structured_masks(ctx, dim=0, protect={classifier}, channel="filter")
