"""RigL, dynamic sparse training (Evci et al. 2020, "Rigging the Lottery: Making All Tickets Winners").

Each round starts from a random mask at the round's target sparsity (per-layer densities uniform
or ERK) and moves it during retraining. Every `update_interval` steps t, until
t = end_fraction x (retraining steps), each layer drops the k = round(alpha_t x active) active
weights of smallest |w| and grows the k weights inactive before the update with the largest |grad|,
grown weights starting at 0, where alpha_t = alpha/2 x (1 + cos(pi t / T_end)). Per-layer counts,
and so the sparsity, never change.

Unlike the reference implementation, the optimizer still steps on update iterations (a callback
cannot skip it), so grown weights take that step's gradient at once, and their optimizer state
(momentum, Adam moments) is not reset: a callback has no handle on the optimizer.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from lth_sweep.trainables.pruning.base import Masks, PruneContext, PruneSpec
from lth_sweep.trainables.pruning.densities import kept_counts
from lth_sweep.trainables.pruning.selection import prune_lowest


class Spec(PruneSpec):
    method: Literal["rigl"] = "rigl"
    distribution: Literal["uniform", "erk"] = "erk"
    update_interval: int = Field(100, ge=1, description="iterations between mask updates (delta T)")
    drop_fraction: float = Field(0.3, gt=0, lt=1, description="share of active weights moved at the first update (alpha)")
    end_fraction: float = Field(0.75, gt=0, le=1, description="no updates after this share of the retraining (T_end)")

    def variant(self) -> str:
        return "" if self.distribution == "erk" else f"-{self.distribution}"

    def training_callbacks(self, ctx: PruneContext, model: nn.Module, masks: Masks) -> tuple:
        return training_callbacks(ctx, model, masks)


def next_masks(ctx: PruneContext) -> Masks:
    """A random mask at the round's target, anew each round (the previous masks are ignored)."""
    shapes = {name: mask.shape for name, mask in ctx.masks.items()}
    kept = kept_counts(shapes, 1 - ctx.target, ctx.spec.distribution)
    generator = ctx.generator()
    scores = {name: torch.rand(shape, generator=generator) for name, shape in shapes.items()}
    counts = {name: mask.numel() - kept[name] for name, mask in ctx.masks.items()}
    return prune_lowest(scores, ctx.all_kept(), counts, allow_collapse=True)[0]


def training_callbacks(ctx: PruneContext, model: nn.Module, masks: Masks) -> tuple:
    steps = ctx.total_iterations - ctx.spec.rewind_iteration
    if steps <= 0:
        raise ValueError(
            f"rigl needs the training schedule: PruneContext.total_iterations={ctx.total_iterations} "
            f"is not after the rewind iteration {ctx.spec.rewind_iteration}"
        )
    spec = ctx.spec
    return (
        RigLUpdater(
            model, masks, total_steps=steps, update_interval=spec.update_interval,
            drop_fraction=spec.drop_fraction, end_fraction=spec.end_fraction,
        ),
    )


def update_layer(
    weight: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor, fraction: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One RigL update of one layer: (new mask, flat indices dropped, flat indices grown).

    Ties break by position (stable sorts), so the same inputs always give the same mask.
    """
    flat = mask.flatten()
    active = flat.nonzero().squeeze(1)
    inactive = (~flat).nonzero().squeeze(1)
    k = min(round(fraction * active.numel()), inactive.numel())
    dropped = active[torch.sort(weight.flatten()[active].abs(), stable=True).indices[:k]]
    grown = inactive[torch.sort(grad.flatten()[inactive].abs(), descending=True, stable=True).indices[:k]]
    new = flat.clone()
    new[dropped] = False
    new[grown] = True
    return new.view_as(mask), dropped, grown


class RigLUpdater:
    """Training callback that moves `masks` in place; it must run before the MaskKeeper holding
    the same mask tensors, so it sees the dense gradients and the keeper applies the new masks."""

    def __init__(
        self, model: nn.Module, masks: Masks, *, total_steps: int, update_interval: int,
        drop_fraction: float, end_fraction: float,
    ):
        params = dict(model.named_parameters())
        self.pairs = [(params[name], mask) for name, mask in masks.items()]
        self.total_steps = total_steps
        self.update_interval = update_interval
        self.drop_fraction = drop_fraction
        self.end_step = end_fraction * total_steps
        self.step = 0  # counted from the first retraining iteration
        self.update_steps: list[int] = []

    def fraction_at(self, step: int) -> float:
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * step / self.end_step))

    def is_update_step(self, step: int) -> bool:
        return step > 0 and step % self.update_interval == 0 and step < self.end_step

    @torch.no_grad()
    def before_step(self) -> None:
        if self.is_update_step(self.step):
            fraction = self.fraction_at(self.step)
            for param, mask in self.pairs:
                if param.grad is None:
                    continue
                new, dropped, grown = update_layer(param, param.grad, mask, fraction)
                param[torch.unravel_index(torch.cat([dropped, grown]), param.shape)] = 0  # any memory layout
                mask.copy_(new)  # in place: the lineage and the MaskKeeper hold these tensors
            self.update_steps.append(self.step)
        self.step += 1

    def after_step(self) -> None:
        pass
