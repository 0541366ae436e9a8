"""Structured pruning: whole channels go, not single weights (von Rad & Seuffert 2024,
"Investigating the Effect of Network Pruning on Performance and Interpretability", arXiv 2409.19727).

A channel of a weight is its slice along `dim`: dim=0 is an output channel (a filter, or a linear
layer's output neuron: "structured" pruning); dim=1 is an input channel (a conv's input feature map,
or one input feature of a linear layer: "connection sparsity"). A channel is scored by the L1 or L2
norm of its masked weights; the lowest-scoring channels are removed, i.e. their mask slices become
all False. Counting is in channels, so a round's weight sparsity follows the channel sparsity only
approximately (channels of different layers hold different numbers of weights).

Across layers (scope "global") the norms are made comparable by dividing by the channel's size:
L1 / n (the mean |w|) and L2 / sqrt(n) (the RMS of w), n being the number of weights in one channel.
Without this a wide layer's channels (many weights each) would always outscore a narrow layer's.

Selection itself is `selection.prune_lowest` applied to one score per channel, so the same rules
hold as for unstructured methods: exact counts, ties broken by position, and no layer loses its last
channel unless `allow_collapse`.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from lth_sweep.trainables.pruning.base import PruneContext, PruneSpec
from lth_sweep.trainables.masks import Masks
from lth_sweep.trainables.pruning.selection import prune_lowest

Norm = Literal["l1", "l2"]


class StructuredSpec(PruneSpec):
    """Options shared by the structured methods; each subclass fixes `method`."""

    norm: Norm = Field("l1", description="channel score: L1 (as in the paper) or L2 norm of its weights")
    schedule: Literal["iterative", "oneshot"] = Field(
        "iterative", description="iterative: rate x remaining channels of the last ticket; oneshot: dense to target"
    )

    def variant(self) -> str:
        return ("-l2" if self.norm == "l2" else "") + ("-oneshot" if self.schedule == "oneshot" else "")


def _per_channel(tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """(channels, weights per channel) view of `tensor`, channels taken along `dim`."""
    return tensor.movedim(dim, 0).flatten(1)


def channel_scores(weight: torch.Tensor, dim: int, norm: Norm, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The L1 or L2 norm of each channel along `dim` (0: output, 1: input) of the masked weight."""
    masked = weight.detach().double() if mask is None else weight.detach().double() * mask
    rows = _per_channel(masked, dim)
    return rows.abs().sum(1) if norm == "l1" else rows.norm(dim=1)


def kept_channels(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Which channels along `dim` still hold a kept weight."""
    return _per_channel(mask, dim).any(1)


def _size_normalised(scores: torch.Tensor, weights_per_channel: int, norm: Norm) -> torch.Tensor:
    return scores / (weights_per_channel if norm == "l1" else math.sqrt(weights_per_channel))


def _to_remove(kept: list[torch.Tensor], fraction: float | None, target: float | None) -> int:
    """Channels to remove: round(fraction x remaining), or enough for round(target x all) removed."""
    remaining, total = sum(int(k.sum()) for k in kept), sum(k.numel() for k in kept)
    if fraction is not None:
        return round(fraction * remaining)
    return max(0, round(target * total) - (total - remaining))


def prune_channels(
    weights: dict[str, torch.Tensor],
    masks: Masks,
    *,
    dim: int,
    norm: Norm,
    fraction_of_remaining: float | None = None,
    target: float | None = None,
    scope: Literal["global", "layerwise"] = "global",
    protect: set[str] | frozenset[str] = frozenset(),
    allow_collapse: bool = False,
) -> tuple[Masks, list[str]]:
    """Removes whole channels along `dim` with the lowest norms. Returns (masks, saved layers).

    Exactly one of `fraction_of_remaining` (iterative: round(fraction x remaining channels) go, of
    each layer's or of all) and `target` (one-shot: channels are removed until round(target x
    channels) are gone, per layer or in all) is given. Layers in `protect` keep every channel along
    `dim` and are left out of the counts. Saved layers are those that kept their strongest channel
    only because `allow_collapse` is False.
    """
    if (fraction_of_remaining is None) == (target is None):
        raise ValueError("give exactly one of fraction_of_remaining and target")
    candidates = [name for name in masks if name not in protect]
    if not candidates:
        return {name: mask.clone() for name, mask in masks.items()}, []
    channel_masks, scores = {}, {}
    for name in candidates:
        mask = masks[name]
        channel_masks[name] = kept_channels(mask, dim)
        scores[name] = channel_scores(weights[name], dim, norm, mask)
        if scope == "global":
            scores[name] = _size_normalised(scores[name], mask.numel() // mask.shape[dim], norm)
    if scope == "layerwise":
        count = {name: _to_remove([kept], fraction_of_remaining, target) for name, kept in channel_masks.items()}
    else:
        count = _to_remove(list(channel_masks.values()), fraction_of_remaining, target)
        if not allow_collapse:
            # prune_lowest keeps each layer's strongest channel yet still drops `count` in all, so
            # the count must leave one channel per layer (reachable: nets have few channels)
            nonempty = sum(bool(kept.any()) for kept in channel_masks.values())
            count = min(count, sum(int(kept.sum()) for kept in channel_masks.values()) - nonempty)
    kept, saved = prune_lowest(scores, channel_masks, count, scope, allow_collapse)
    out = {name: mask.clone() for name, mask in masks.items()}
    for name in candidates:
        shape = [1] * masks[name].dim()
        shape[dim] = -1
        out[name] = masks[name] & kept[name].view(shape)
    return out, saved


def next_structured_masks(ctx: PruneContext, *, dim: int, protect: set[str], channel: str) -> Masks:
    """A structured method's round: iterative from the last ticket, or one-shot from the dense trunk."""
    spec: StructuredSpec = ctx.spec
    common = dict(dim=dim, norm=spec.norm, scope=spec.scope, protect=protect, allow_collapse=spec.allow_layer_collapse)
    if spec.schedule == "iterative":
        masks, saved = prune_channels(ctx.trained, ctx.masks, fraction_of_remaining=spec.rate, **common)
    else:
        masks, saved = prune_channels(ctx.dense, ctx.all_kept(), target=ctx.target, **common)
    ctx.collapse_avoided(saved, f"the strongest {channel}")
    return masks
