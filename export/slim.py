"""A structured ticket made physically smaller: the channels its pruning removed cut out of the
network, so it stores and computes less, with the same outputs.

`torch_pruning`'s DependencyGraph finds, for each channel, every layer coupled to it (the conv
writing it, its norm, the layers reading it, a residual sum's other branches, a flatten's HxW
inputs of the next linear layer). A channel is removed only when it is provably dead in the whole
group:
  - it emits exactly 0: in every layer writing it, the channel's weights and bias are 0, and every
    norm in the group has scale and shift 0 (so residual branches summing into it are 0 too); or
  - nobody reads it: every layer reading it has all its input weights for it at 0.
Either way removing it changes no output but for the order of floating-point sums. A group with a
layer whose role this module cannot judge (any other layer with parameters, a grouped conv) keeps
all its channels. The final classifier's outputs are never removed, and a layer keeps at least one
channel. `slimmed` then checks the outputs on real images (`torch.allclose`, atol 1e-5) and
refuses a network that differs.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from lth_sweep.export.errors import ExportError
from lth_sweep.export.network import parameter_count

ATOL = 1e-5


@dataclass
class SlimReport:
    parameters_before: int
    parameters_after: int
    channels_removed: dict[str, int] = field(default_factory=dict)  # a group's root layer -> channels cut
    max_abs_difference: float = 0.0  # between the slim and the masked network's outputs on the check images

    def as_metadata(self) -> dict:
        return {
            "parameters_before": self.parameters_before, "parameters_after": self.parameters_after,
            "channels_removed": self.channels_removed, "max_abs_difference": self.max_abs_difference,
            "check": f"torch.allclose(slim, masked, atol={ATOL}) on the check images",
        }


def _zero(tensor: torch.Tensor | None) -> bool:
    return tensor is None or not bool(tensor.detach().ne(0).any())


def _dead_channels(graph: tp.DependencyGraph, group, channels: int) -> list[int]:
    """The root channels of `group` that emit exactly 0 or that nobody reads."""
    silent = [True] * channels  # every writer and norm is zero for it
    unread = [True] * channels  # every reader's input weights for it are zero
    unknown = [False] * channels
    for item in group:
        module, handler = item.dep.target.module, item.dep.handler
        roots, indices = item.root_idxs, item.idxs
        if isinstance(module, (nn.Conv2d, nn.Linear)) and getattr(module, "groups", 1) == 1:
            if graph.is_out_channel_pruning_fn(handler):
                for index, root in zip(indices, roots):
                    bias = None if module.bias is None else module.bias[index]
                    silent[root] &= _zero(module.weight[index]) and _zero(bias)
            elif graph.is_in_channel_pruning_fn(handler):
                for index, root in zip(indices, roots):
                    unread[root] &= _zero(module.weight[:, index])
            else:
                for root in roots:
                    unknown[root] = True
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            for index, root in zip(indices, roots):
                silent[root] &= module.affine and _zero(module.weight[index]) and _zero(module.bias[index])
        elif isinstance(module, nn.Parameter) or (isinstance(module, nn.Module) and next(module.parameters(False), None) is not None):
            for root in roots:
                unknown[root] = True
        # anything else (activations, pooling, flatten, sums, concatenations) passes a channel on as it is
    return [c for c in range(channels) if not unknown[c] and (silent[c] or unread[c])]


def slim_copy(model: nn.Module, example: torch.Tensor, classifier: str) -> tuple[nn.Module, SlimReport]:
    """A copy of `model` (eval mode) with its dead channels removed, and what was removed;
    `classifier`: the name of the layer writing the logits."""
    slim = copy.deepcopy(model).eval()
    names = {module: name for name, module in slim.named_modules()}
    report = SlimReport(parameter_count(model), 0)
    with torch.enable_grad():  # the graph is traced through autograd
        graph = tp.DependencyGraph().build_dependency(slim, example_inputs=example[:1], verbose=False)
    for group in graph.get_all_groups(ignored_layers=[slim.get_submodule(classifier)]):
        root = group[0].dep.target.module
        channels = len(group[0].idxs)
        dead = _dead_channels(graph, group, channels)
        if len(dead) == channels:
            dead = dead[1:]  # a layer keeps one channel: an empty tensor is no network
        if dead:
            group.prune(idxs=dead)
            report.channels_removed[names.get(root, str(root))] = len(dead)
    report.parameters_after = parameter_count(slim)
    return slim.eval(), report


def slimmed(model: nn.Module, images: torch.Tensor, classifier: str) -> tuple[nn.Module, SlimReport]:
    """`slim_copy`, checked: ExportError unless its outputs on `images` are allclose (atol 1e-5)
    to `model`'s."""
    slim, report = slim_copy(model, images, classifier)
    with torch.no_grad():
        expected, got = model(images), slim(images)
    report.max_abs_difference = float((expected - got).abs().max()) if expected.shape == got.shape else float("inf")
    if expected.shape != got.shape or not torch.allclose(got, expected, atol=ATOL):
        raise ExportError(
            f"the slim network's outputs differ from the ticket's (max |difference| {report.max_abs_difference:.3g} > {ATOL}) "
            "on the check images: not written"
        )
    return slim, report
