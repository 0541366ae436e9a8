"""Turning per-weight scores into masks: keep the highest-scoring weights, globally or per layer.

Every unstructured method ends here. Exactly the requested number of weights goes; ties break by
position (stable sort) so the same scores always give the same mask, bit for bit. Unless allowed,
no layer loses its last weight (layer collapse, which disconnects the network): the best-scoring
weight of each layer is kept, and the layers saved this way are returned so the run can say so.
"""
from __future__ import annotations

import torch
from lth_sweep.trainables.masks import Masks



def _drop_lowest(scores: torch.Tensor, kept: torch.Tensor, count: int) -> torch.Tensor:
    """`kept` (flat bool) with its `count` lowest-scoring True entries switched off."""
    candidates = kept.nonzero().squeeze(1)
    order = torch.sort(scores[candidates], stable=True).indices
    new = kept.clone()
    new[candidates[order[:count]]] = False
    return new


def prune_lowest(
    scores: dict[str, torch.Tensor],
    masks: Masks,
    count: int | dict[str, int],
    scope: str = "global",
    allow_collapse: bool = False,
) -> tuple[Masks, list[str]]:
    """Switches off the `count` lowest-scoring kept weights (globally, or per layer with a dict
    or `scope="layerwise"` and an int applied to every layer). Returns (masks, saved layers)."""
    names = list(masks)
    if scope == "layerwise" or isinstance(count, dict):
        counts = count if isinstance(count, dict) else {n: count for n in names}
        out, saved = {}, []
        for name in names:
            kept = masks[name].flatten()
            todo = counts[name]
            if not allow_collapse and todo >= int(kept.sum()) > 0:
                todo, _ = int(kept.sum()) - 1, saved.append(name)
            flat = _drop_lowest(scores[name].flatten().double(), kept, todo)
            out[name] = flat.view_as(masks[name])
        return out, saved

    flat_scores = torch.cat([scores[n].flatten().double() for n in names])
    kept = torch.cat([masks[n].flatten() for n in names])
    sizes = [masks[n].numel() for n in names]
    new = _drop_lowest(flat_scores, kept, count)
    saved = []
    if not allow_collapse:
        # Protect each layer's best kept weight, then prune the same number from the rest.
        collapsed = [n for n, part in zip(names, new.split(sizes)) if not part.any() and masks[n].any()]
        if collapsed:
            protected = flat_scores.clone()
            offsets = torch.tensor([0, *sizes]).cumsum(0)
            for i, name in enumerate(names):
                part = kept[offsets[i] : offsets[i + 1]]
                if part.any():
                    layer_scores = torch.where(part, flat_scores[offsets[i] : offsets[i + 1]], -torch.inf)
                    protected[offsets[i] + int(layer_scores.argmax())] = torch.inf
            new = _drop_lowest(protected, kept, count)
            # Saved unless the count leaves fewer weights than layers (the lineage then stops).
            saved = [n for n, part in zip(names, new.split(sizes)) if n in collapsed and part.any()]
    out = {n: part.view_as(masks[n]) for n, part in zip(names, new.split(sizes))}
    return out, saved


def prune_fraction(scores, masks: Masks, fraction: float, scope: str, allow_collapse: bool = False):
    """Prunes round(fraction x remaining) weights: of all remaining (global) or of each layer's."""
    if scope == "layerwise":
        counts = {n: round(fraction * int(m.sum())) for n, m in masks.items()}
        return prune_lowest(scores, masks, counts, allow_collapse=allow_collapse)
    remaining = sum(int(m.sum()) for m in masks.values())
    return prune_lowest(scores, masks, round(fraction * remaining), "global", allow_collapse)


def prune_to_sparsity(scores, masks: Masks, sparsity: float, scope: str, allow_collapse: bool = False):
    """Prunes kept weights until round(sparsity x total) of all (or of each layer's) are gone."""
    if scope == "layerwise":
        counts = {n: max(0, round(sparsity * m.numel()) - int((~m).sum())) for n, m in masks.items()}
        return prune_lowest(scores, masks, counts, allow_collapse=allow_collapse)
    total = sum(m.numel() for m in masks.values())
    pruned = sum(int((~m).sum()) for m in masks.values())
    return prune_lowest(scores, masks, max(0, round(sparsity * total) - pruned), "global", allow_collapse)
