"""SNIP, pruning at initialisation (Lee et al. 2019, "SNIP: Single-shot Network Pruning based on
Connection Sensitivity"): the connection sensitivity of a weight is |g ⊙ w|, with g the gradient of
the cross-entropy on training batches, taken at the weights retraining starts from. Each round
prunes the dense start weights straight to the round's target, keeping the most sensitive weights.

Scoring batches are class-balanced, as in the GraSP authors' SNIP and GraSP code: the training
split is shuffled with `ctx.generator()` and interleaved class by class, so any `batch_size`
consecutive examples cover the classes evenly. The model scores in train mode (batch norm uses the
batch's statistics), as in the reference code.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from lth_sweep.trainables.pruning.base import Masks, PruneContext, PruneSpec
from lth_sweep.trainables.pruning.selection import prune_to_sparsity

Batch = tuple[torch.Tensor, torch.Tensor]


class Spec(PruneSpec):
    method: Literal["snip"] = "snip"
    batch_size: int = Field(256, ge=1, description="examples per scoring batch (class-balanced)")
    batches: int = Field(1, ge=1, description="scoring batches; their gradients are summed")


def scoring_batches(data, batch_size: int, batches: int, generator: torch.Generator) -> list[Batch]:
    """`batches` class-balanced batches of min(batch_size, N) examples; after N examples the
    order starts again from its beginning."""
    labels = data.labels
    n = len(labels)
    shuffled = torch.randperm(n, generator=generator)
    by_class = torch.sort(labels[shuffled], stable=True)
    # rank of each shuffled example among the examples of its class
    rank = torch.empty(n, dtype=torch.long)
    rank[by_class.indices] = torch.arange(n) - torch.searchsorted(by_class.values, by_class.values)
    order = shuffled[torch.sort(rank, stable=True).indices]  # 1st of every class, then 2nd, ...
    size = min(batch_size, n)
    picks = [order[torch.arange(b * size, (b + 1) * size) % n] for b in range(batches)]
    return [data.batch(idx) for idx in picks]


def loss_gradients(model: nn.Module, batches: Sequence[Batch], names: list[str], temperature: float = 1.0):
    """d(cross-entropy of logits / temperature)/d(weight) for each named weight, summed over batches."""
    params = dict(model.named_parameters())
    weights = [params[name] for name in names]
    total = [torch.zeros_like(w) for w in weights]
    for images, labels in batches:
        loss = F.cross_entropy(model(images) / temperature, labels)
        for acc, grad in zip(total, torch.autograd.grad(loss, weights)):
            acc += grad
    return total


def snip_scores(model: nn.Module, batches: Sequence[Batch], names: list[str]) -> dict[str, torch.Tensor]:
    """|g ⊙ w| at the model's current weights, g summed over `batches` of (images, labels)."""
    params = dict(model.named_parameters())
    grads = loss_gradients(model, batches, names)
    return {name: (grad * params[name].detach()).abs() for name, grad in zip(names, grads)}


def next_masks(ctx: PruneContext) -> Masks:
    spec = ctx.spec
    ctx.model.load_state_dict(ctx.start)
    ctx.model.train()
    batches = scoring_batches(ctx.data, spec.batch_size, spec.batches, ctx.generator())
    scores = snip_scores(ctx.model, batches, list(ctx.masks))
    masks, saved = prune_to_sparsity(scores, ctx.all_kept(), ctx.target, spec.scope, spec.allow_layer_collapse)
    ctx.collapse_avoided(saved, "the most sensitive weight")
    return masks
