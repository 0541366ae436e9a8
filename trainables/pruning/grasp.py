"""GraSP, pruning at initialisation (Wang et al. 2020, "Picking Winning Tickets Before Training by
Preserving Gradient Flow"): S = -θ ⊙ Hg, with g the loss gradient and Hg the Hessian-gradient
product, both at the weights retraining starts from. Removing the weights with the highest S
reduces the gradient norm least (or raises it most), so GraSP removes the highest S and keeps the
lowest. Each round prunes the dense start weights straight to the round's target.

As in the official code: the logits are divided by a temperature T (200) in both passes; g is
summed over the scoring batches, then Hg = d(g_detached · g_b)/dθ summed over the same batches;
g and H cover the pruned weights only (biases, norms and excluded layers are constants). Batches
are drawn as in SNIP (class-balanced), the model scores in train mode. Unlike the official code,
the linear layers are not re-initialised with Xavier before scoring: the start weights are scored.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from lth_sweep.trainables.pruning.base import Masks, PruneContext, PruneSpec
from lth_sweep.trainables.pruning.selection import prune_to_sparsity
from lth_sweep.trainables.pruning.snip import Batch, loss_gradients, scoring_batches


class Spec(PruneSpec):
    method: Literal["grasp"] = "grasp"
    batch_size: int = Field(256, ge=1, description="examples per scoring batch (class-balanced)")
    batches: int = Field(1, ge=1, description="scoring batches; g and Hg are summed over them")
    temperature: float = Field(200.0, gt=0, description="logits are divided by T before the loss")


def grasp_scores(
    model: nn.Module, batches: Sequence[Batch], names: list[str], temperature: float = 200.0
) -> dict[str, torch.Tensor]:
    """S = -θ ⊙ Hg at the model's current weights (higher = removed first)."""
    params = dict(model.named_parameters())
    weights = [params[name] for name in names]
    g = loss_gradients(model, batches, names, temperature)
    hg = [torch.zeros_like(w) for w in weights]
    for images, labels in batches:
        loss = F.cross_entropy(model(images) / temperature, labels)
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        flow = sum((fixed * grad).sum() for fixed, grad in zip(g, grads))
        for acc, product in zip(hg, torch.autograd.grad(flow, weights)):
            acc += product
    return {name: -(w.detach() * product) for name, w, product in zip(names, weights, hg)}


def next_masks(ctx: PruneContext) -> Masks:
    spec = ctx.spec
    ctx.model.load_state_dict(ctx.start)
    ctx.model.train()
    batches = scoring_batches(ctx.data, spec.batch_size, spec.batches, ctx.generator())
    scores = grasp_scores(ctx.model, batches, list(ctx.masks), spec.temperature)
    keep = {name: -score for name, score in scores.items()}
    masks, saved = prune_to_sparsity(keep, ctx.all_kept(), ctx.target, spec.scope, spec.allow_layer_collapse)
    ctx.collapse_avoided(saved, "the lowest-scoring weight")
    return masks
