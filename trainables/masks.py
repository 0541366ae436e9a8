"""Masks: one bool tensor per pruned weight, True = kept.

A mask holds through training because the gradient of a pruned weight is zeroed before every
optimizer step and the weight is re-zeroed after it: no step, momentum or weight decay (coupled or
decoupled) can move it away from zero. Masks live on their weights' device and multiply by logical
index, so they hold under any memory layout (channels_last) and under bf16 autocast, which only
casts copies of the (fp32) weights for the forward pass.
"""
from __future__ import annotations

import torch
from torch import nn

Masks = dict[str, torch.Tensor]


def dense_masks(model: nn.Module, names: list[str]) -> Masks:
    params = dict(model.named_parameters())
    # contiguous whatever the model's memory layout (channels_last): masks are saved as safetensors
    contiguous = torch.contiguous_format
    return {name: torch.ones_like(params[name], dtype=torch.bool, memory_format=contiguous) for name in names}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask)


class MaskKeeper:
    """Training callback that keeps pruned weights at exactly zero."""

    def __init__(self, model: nn.Module, masks: Masks):
        params = dict(model.named_parameters())
        self.pairs = [(params[name], mask) for name, mask in masks.items()]

    @torch.no_grad()
    def before_step(self) -> None:
        for param, mask in self.pairs:
            if param.grad is not None:
                param.grad.mul_(mask)

    @torch.no_grad()
    def after_step(self) -> None:
        for param, mask in self.pairs:
            param.mul_(mask)


def count_kept(masks: Masks) -> int:
    return int(sum(mask.sum().item() for mask in masks.values()))


def count_total(masks: Masks) -> int:
    return sum(mask.numel() for mask in masks.values())


def sparsity_report(model: nn.Module, masks: Masks, nominal: float) -> dict[str, float]:
    """Nominal sparsity (what the schedule asked for) beside realised sparsity read off the weights.

    `sparsity` is the share of exactly-zero weights among the pruned layers; `sparsity/model` the
    share among all the model's parameters (biases, norms and excluded layers included).
    """
    params = dict(model.named_parameters())
    report = {"sparsity/nominal": nominal}
    zeros = total = 0
    for name in masks:
        layer_zeros = int((params[name] == 0).sum().item())
        report[f"sparsity/layer/{name}"] = layer_zeros / params[name].numel()
        zeros += layer_zeros
        total += params[name].numel()
    report["sparsity"] = zeros / total
    all_zeros = sum(int((p == 0).sum().item()) for p in params.values())
    report["sparsity/model"] = all_zeros / sum(p.numel() for p in params.values())
    report["weights/remaining"] = float(total - zeros)
    return report


def companion_masks(model, masks: Masks) -> Masks:
    """For methods that remove whole filters: masks for the biases and norm parameters of the
    removed output channels (see `PrunableModel.channel_companions`), so a removed filter emits 0."""
    out = {}
    for name, mask in masks.items():
        alive = mask.flatten(1).any(1)
        for companion in model.channel_companions(name):
            out[companion] = alive.clone()
    return out
