"""SynFlow, data-free pruning at initialisation (Tanaka et al. 2020, "Pruning neural networks
without any data by iteratively conserving synaptic flow"): with every weight replaced by its
absolute value and an all-ones input, R = sum of the outputs and the score is |θ ⊙ dR/dθ|.
Pruning is iterative within a round: `iterations` steps on the exponential schedule
1 - density^(k/n), re-scoring the masked network each step, which is what avoids layer collapse.

As in the authors' code: the abs() applies to the whole state (biases and batch-norm parameters and
running statistics too) and the network runs in eval mode, so batch norm uses those running
statistics. Scoring runs in float64 on a copy of the model: R grows with depth and would overflow
float32. The data is never read, only the input shape.
"""
from __future__ import annotations

import copy
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from lth_sweep.trainables.pruning.base import Masks, PruneContext, PruneSpec
from lth_sweep.trainables.pruning.selection import prune_to_sparsity


class Spec(PruneSpec):
    method: Literal["synflow"] = "synflow"
    iterations: int = Field(100, ge=1, description="pruning steps per round, on an exponential schedule")

    def variant(self) -> str:
        return "" if self.iterations == 100 else f"-{self.iterations}it"


def linearised(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A float64, eval-mode copy of `model` holding |state|."""
    net = copy.deepcopy(model).double().eval()
    net.load_state_dict({k: v.abs() if v.is_floating_point() else v for k, v in state.items()})
    return net


def synflow_scores(net: nn.Module, masks: Masks, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """|θ ⊙ dR/dθ| of a linearised network, its pruned weights zeroed first (in place)."""
    params = dict(net.named_parameters())
    weights = [params[name] for name in masks]
    with torch.no_grad():
        for weight, mask in zip(weights, masks.values()):
            weight.mul_(mask)
    flow = net(torch.ones(1, *input_shape, dtype=torch.float64)).sum()
    grads = torch.autograd.grad(flow, weights)
    return {name: (w.detach() * grad).abs() for name, w, grad in zip(masks, weights, grads)}


def synflow_masks(
    model: nn.Module,
    start_state: dict[str, torch.Tensor],
    masks: Masks,
    target: float,
    scope: str = "global",
    iterations: int = 100,
    allow_collapse: bool = False,
    *,
    input_shape: tuple[int, ...],
) -> tuple[Masks, list[str]]:
    """`masks` pruned to `target` in `iterations` SynFlow steps; returns (masks, saved layers)."""
    net = linearised(model, start_state)
    density = 1 - target
    saved: list[str] = []
    for k in range(1, iterations + 1):
        sparsity = target if k == iterations else 1 - density ** (k / iterations)
        scores = synflow_scores(net, masks, input_shape)
        masks, rescued = prune_to_sparsity(scores, masks, sparsity, scope, allow_collapse)
        saved += [name for name in rescued if name not in saved]
    return masks, saved


def next_masks(ctx: PruneContext) -> Masks:
    spec = ctx.spec
    masks, saved = synflow_masks(
        ctx.model, ctx.start, ctx.all_kept(), ctx.target, spec.scope, spec.iterations,
        spec.allow_layer_collapse, input_shape=tuple(ctx.data.image_shape),
    )
    ctx.collapse_avoided(saved, "the highest-flow weight")
    return masks
