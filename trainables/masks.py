"""Masks: one bool tensor per pruned weight, True = kept.

A mask holds through training because the gradient of a pruned weight is zeroed before every
optimizer step and the weight is re-zeroed after it: no step, momentum or weight decay (coupled or
decoupled) can move it away from zero. Masks live on their weights' device and multiply by logical
index, so they hold under any memory layout (channels_last) and under bf16 autocast, which only
casts copies of the (fp32) weights for the forward pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

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
    """Training callback that keeps pruned weights at exactly zero.

    One fused multi-tensor multiply per step for all layers (`torch._foreach_mul_`) instead of
    one kernel launch per layer: the same products, bit for bit (signs of zeros included), with
    2 launches per step instead of 2 per pruned layer (bench/mask_keeping.py)."""

    def __init__(self, model: nn.Module, masks: Masks):
        params = dict(model.named_parameters())
        self.params = [params[name] for name in masks]
        self.masks = list(masks.values())

    @torch.no_grad()
    def before_step(self) -> None:
        pairs = [(param.grad, mask) for param, mask in zip(self.params, self.masks) if param.grad is not None]
        if pairs:
            grads, masks = zip(*pairs)
            torch._foreach_mul_(list(grads), list(masks))

    @torch.no_grad()
    def after_step(self) -> None:
        if self.params:
            torch._foreach_mul_(self.params, self.masks)


def sparsity_report(model: nn.Module, masks: Masks, nominal: float, example: torch.Tensor | None = None) -> dict[str, float]:
    """Nominal sparsity (what the schedule asked for) beside realised sparsity read off the weights.

    `sparsity` is the effective sparsity over the pruned layers: the share of their weights that
    are zero or cut off from the network (`effective_masks`: reading only a removed channel, or
    writing only into one), so that a removed filter also counts the next layer's weights that
    read it (Vysogorets & Kempe 2023, "Connectivity Matters: Neural Network Pruning Through the
    Lens of Effective Sparsity", JMLR 24). `sparsity/masked` is the share of exactly-zero weights
    alone; the two differ only where a whole channel is cut off, which structured methods do by
    design. `sparsity/layer/<name>` and `weights/remaining` are effective too. `sparsity/probed`
    is 1 when the model's structure was traced (`example`, an input batch, given and every op
    known), 0 when the effective figures fell back to the masked ones. `sparsity/model` is the
    share of exactly-zero values among all the model's parameters (biases, norms and excluded
    layers included).
    """
    params = dict(model.named_parameters())
    effective = None if example is None else effective_masks(model, list(masks), example)
    report = {"sparsity/nominal": nominal, "sparsity/probed": float(effective is not None)}
    zeros = dead = total = 0
    for name in masks:
        alive = params[name] != 0 if effective is None else effective[name]
        layer_dead = alive.numel() - int(alive.sum().item())
        report[f"sparsity/layer/{name}"] = layer_dead / alive.numel()
        zeros += int((params[name] == 0).sum().item())
        dead += layer_dead
        total += alive.numel()
    report["sparsity/masked"] = zeros / total
    report["sparsity"] = dead / total
    all_zeros = sum(int((p == 0).sum().item()) for p in params.values())
    report["sparsity/model"] = all_zeros / sum(p.numel() for p in params.values())
    report["weights/remaining"] = float(total - dead)
    return report


class _Unprovable(Exception):
    """The forward pass ran an op the connectivity probe cannot reason about."""


# Ops that, fed non-negative tensors, give non-negative ones and keep "no path reaches this value"
# as an exact zero; conv2d, linear, batch_norm and max_pool2d are rewritten by the probe itself.
_SAFE_OPS = frozenset({
    "relu", "relu_", "add", "add_", "__add__", "__iadd__", "__radd__", "cat", "flatten", "view", "reshape",
    "expand", "contiguous", "adaptive_avg_pool2d", "avg_pool2d", "mean", "sum", "dropout", "dim", "size",
    "__get__", "__getitem__", "squeeze", "unsqueeze", "permute", "transpose", "split", "chunk", "narrow",
})


class _ConnectivityProbe(TorchFunctionMode):
    """Runs a forward pass with every weight and bias replaced by 1 where it is non-zero and 0
    where it is zero, each norm channel by x * [gamma != 0] + [gamma != 0 or beta != 0] (silent
    only when both are zero, as the filter method leaves them), and max-pooling by average-pooling (so that the backward pass reaches every window's inputs, not the argmax).
    With an all-ones input, a channel's value is then zero exactly when no path of non-zero
    weights or biases reaches it, and the gradient of the summed logits at a layer's output is
    zero exactly when no path leads from it to a logit. Records both for the weights in `names`."""

    def __init__(self, names: dict[int, str]):
        super().__init__()
        self.names = names
        self.inputs: dict[str, torch.Tensor] = {}  # weight name -> bool per input channel
        self.groups: dict[str, int] = {}
        self.outputs: list[tuple[str, int, torch.Tensor]] = []  # (weight name, channel dim, output)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "conv2d":
            return self._layer(F.conv2d, 1, *args, **kwargs)
        if name == "linear":
            return self._layer(F.linear, -1, *args, **kwargs)
        if name == "batch_norm":
            return self._norm(*args, **kwargs)
        if name == "max_pool2d":
            return self._pool(*args, **kwargs)
        if name not in _SAFE_OPS:
            raise _Unprovable(name)
        return func(*args, **kwargs)

    def _layer(self, op, channel_dim, input, weight, bias=None, *rest, **options):
        output = op(input, _indicator(weight), None if bias is None else _indicator(bias), *rest, **options)
        name = self.names.get(id(weight))
        if name is not None and output.requires_grad:
            live = (input != 0).movedim(channel_dim, 0).flatten(1).any(1)
            self.inputs[name] = live | self.inputs[name] if name in self.inputs else live
            self.groups[name] = input.shape[channel_dim] // weight.shape[1]
            self.outputs.append((name, channel_dim, output))
            return output + 0  # a new tensor: an in-place op downstream must not change the recorded one
        return output

    @staticmethod
    def _norm(input, running_mean, running_var, weight=None, bias=None, *rest, **options):
        shape = (1, -1) + (1,) * (input.dim() - 2)
        if weight is None:  # no affine parameters: a constant may come out whatever goes in
            return input + 1
        # gamma = beta = 0 silences the channel (a removed filter); otherwise it may emit a constant
        emits = (weight != 0) if bias is None else (weight != 0) | (bias != 0)
        return input * _indicator(weight).view(shape) + emits.to(input.dtype).view(shape)

    @staticmethod
    def _pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        if return_indices or dilation not in (1, (1, 1)):
            raise _Unprovable("max_pool2d")
        return F.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad=True)


def _indicator(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor.detach() != 0).to(torch.float64)


def _connected(weight: torch.Tensor, inputs: torch.Tensor, outputs: torch.Tensor, groups: int) -> torch.Tensor:
    """Which entries of `weight` (out, in/groups, ...) read a live input and write a read output."""
    out_channels, per_group = weight.shape[0], weight.shape[1]
    group_of_output = torch.arange(out_channels, device=weight.device) // (out_channels // groups)
    reads = inputs.view(groups, per_group)[group_of_output]  # (out, in/groups)
    tail = (1,) * (weight.dim() - 2)
    return reads.view(out_channels, per_group, *tail) & outputs.view(out_channels, 1, *tail)


@torch.no_grad()
def _probe_outputs(probe: _ConnectivityProbe, logits: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.enable_grad():
        grads = torch.autograd.grad(logits.sum(), [output for _, _, output in probe.outputs], allow_unused=True)
    read: dict[str, torch.Tensor] = {}
    for (name, channel_dim, output), grad in zip(probe.outputs, grads):
        channels = output.shape[channel_dim]
        live = torch.zeros(channels, dtype=torch.bool, device=output.device)
        if grad is not None:
            live = (grad != 0).movedim(channel_dim, 0).flatten(1).any(1)
        read[name] = live | read[name] if name in read else live
    return read


def effective_masks(model: nn.Module, names: list[str], example: torch.Tensor) -> Masks | None:
    """For each weight in `names`: True where it is non-zero AND its input channel carries a
    signal (some path of non-zero weights or biases from the input reaches it) AND its output
    channel is read (some path of non-zero weights leads from it to a logit, through a norm whose
    scale is non-zero). So a weight reading only a removed filter (weights, bias and norm zeroed),
    or writing into a channel nobody reads (all its readers' input slices zeroed), is dead.

    Channels, not single positions, decide: a weight is never declared dead for where it sits in
    its kernel. A fully-zeroed filter whose bias or norm shift is still non-zero emits a constant,
    which counts as a signal (unstructured methods leave biases alone). The model's own forward
    pass is traced on a batch shaped like `example`, so residual sums, concatenations, pooling and
    flattening are followed as the model wires them (Conv-N, LeNet, ResNets, VGG, WideResNet,
    GoogLeNet, Inception-V3). Returns None, for the caller to count zeros alone, when the forward
    pass uses an op the probe cannot reason about (attention, layer norms: the CLIP models), or
    its values overflow.
    """
    params = dict(model.named_parameters())
    probe = _ConnectivityProbe({id(params[name]): name for name in names})
    modes = {module: module.training for module in model.modules()}
    model.eval()  # no running statistics touched, dropout off
    device = params[names[0]].device if names else example.device
    x = torch.ones((1, *example.shape[1:]), dtype=torch.float64, device=device, requires_grad=True)
    try:
        with torch.autocast(device.type, enabled=False), torch.enable_grad(), probe:
            logits = model(x)
        if not isinstance(logits, torch.Tensor) or not torch.isfinite(logits).all():
            return None
        read = _probe_outputs(probe, logits)
    except _Unprovable:
        return None
    finally:
        for module, training in modes.items():
            module.training = training
    out = {}
    for name in names:
        alive = params[name].detach() != 0
        if name in read:
            alive = alive & _connected(alive, probe.inputs[name], read[name], probe.groups[name])
        out[name] = alive
    return out


def companion_masks(model, masks: Masks) -> Masks:
    """For methods that remove whole filters: masks for the biases and norm parameters of the
    removed output channels (see `PrunableModel.channel_companions`), so a removed filter emits 0."""
    out = {}
    for name, mask in masks.items():
        alive = mask.flatten(1).any(1)
        for companion in model.channel_companions(name):
            out[companion] = alive.clone()
    return out
