"""Input-channel pruning, the "connection sparsity" of von Rad & Seuffert 2024 (arXiv 2409.19727):
whole input channels of each layer (a conv's input feature maps, a linear layer's input features)
with the smallest L1 (or L2) norm are removed, iteratively (rate x remaining channels per round,
from the last ticket) or one-shot (from the dense trunk to round(target x channels)). See
`structured.py` for scoring and counting."""
from __future__ import annotations

from typing import Literal

from lth_sweep.trainables.pruning.base import PruneContext
from lth_sweep.trainables.pruning.structured import StructuredSpec, next_structured_masks


class Spec(StructuredSpec):
    method: Literal["channel_in"] = "channel_in"


def next_masks(ctx: PruneContext):
    # The model's first layer reads the image: its input channels are the colour channels, and
    # removing one blinds the network to a colour, so they are exempt. Named from the model, not
    # ctx.masks, since a model may exclude its stem (ResNet-20) and the next layer reads features.
    stem = ctx.model.prunable_weights()[0]
    return next_structured_masks(ctx, dim=1, protect={stem}, channel="input channel")
