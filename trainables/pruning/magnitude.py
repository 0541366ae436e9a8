"""Magnitude pruning of a fraction of the *remaining* weights, globally or layer by layer.

Exactly round(fraction x remaining) weights go each time; ties in magnitude are broken by position
(stable sort), so the same weights always give the same mask, bit for bit.
"""
from __future__ import annotations

import torch

Masks = dict[str, torch.Tensor]


def _prune_lowest(scores: torch.Tensor, kept: torch.Tensor, count: int) -> torch.Tensor:
    """Returns `kept` with the `count` lowest-scoring kept entries switched off."""
    flat_kept = kept.flatten()
    candidates = flat_kept.nonzero().squeeze(1)
    order = torch.sort(scores.flatten()[candidates], stable=True).indices
    new = flat_kept.clone()
    new[candidates[order[:count]]] = False
    return new.view_as(kept)


def prune_by_magnitude(weights: dict[str, torch.Tensor], masks: Masks, fraction: float, scope: str) -> Masks:
    if scope == "layerwise":
        return {
            name: _prune_lowest(weights[name].abs(), mask, round(fraction * int(mask.sum())))
            for name, mask in masks.items()
        }
    names = list(masks)
    scores = torch.cat([weights[name].abs().flatten() for name in names])
    kept = torch.cat([masks[name].flatten() for name in names])
    kept = _prune_lowest(scores, kept, round(fraction * int(kept.sum())))
    out, offset = {}, 0
    for name in names:
        size = masks[name].numel()
        out[name] = kept[offset : offset + size].view_as(masks[name])
        offset += size
    return out
