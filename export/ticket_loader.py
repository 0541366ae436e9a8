"""Load a lottery ticket exported by lth-sweep (`lth export --format safetensors`) without lth-sweep.

Needs only torch and safetensors (and torchvision where model.py imports it). The export folder:

    weights.safetensors   the ticket's weights, pruned entries exact zeros; its metadata describes it
    model.py              the architecture's source, as it trained the ticket
    load_ticket.py        this file

Use:

    import torch
    from load_ticket import load, read_metadata

    model = load("path/to/export")                  # an nn.Module in eval mode, on the CPU
    info = read_metadata("path/to/export")          # a dict: model, input, classes, sparsity, ticket, ...
    logits = model(images)                          # images: float32 (N, *info["input"]["shape"])

Images are normalised as the sweep's data pipeline did, outside the network: per channel,
(pixels in [0, 1] - info["input"]["normalisation"]["mean"]) / ...["std"]. Class i is
info["classes"]["names"][i].

A slim ticket (`--slim`) has fewer channels than its architecture's arguments say: `load`
rebuilds each such layer at the saved shape before loading the weights.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

METADATA_KEY = "lth.ticket"
WEIGHTS_FILE = "weights.safetensors"
FORMAT_VERSIONS = {"1"}


def _weights_path(path: str | Path) -> Path:
    path = Path(path)
    return path / WEIGHTS_FILE if path.is_dir() else path


def read_metadata(path: str | Path) -> dict:
    """The ticket's metadata (the folder, or its weights file)."""
    with safe_open(str(_weights_path(path)), framework="pt") as file:
        metadata = file.metadata() or {}
    if metadata.get("format_version") not in FORMAT_VERSIONS or METADATA_KEY not in metadata:
        raise ValueError(f"{path} is not an lth-sweep ticket of a format version this loader reads ({sorted(FORMAT_VERSIONS)})")
    return json.loads(metadata[METADATA_KEY])


def _architecture(source: Path):
    spec = importlib.util.spec_from_file_location(f"lth_ticket_model_{abs(hash(str(source)))}", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _resized(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A new layer like `module` with the channels of the saved `weight`."""
    if type(module) is nn.Conv2d:
        return nn.Conv2d(
            weight.shape[1] * module.groups, weight.shape[0], module.kernel_size, module.stride, module.padding,
            module.dilation, module.groups, bias is not None, module.padding_mode,
        )
    if type(module) is nn.Linear:
        return nn.Linear(weight.shape[1], weight.shape[0], bias is not None)
    if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):
        return type(module)(weight.shape[0], module.eps, module.momentum, module.affine, module.track_running_stats)
    raise ValueError(f"cannot resize a {type(module).__name__} to the saved shape {tuple(weight.shape)}")


def _fit_shapes(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Replaces each layer whose saved weight has another shape (channels removed) by one that fits."""
    for name, module in list(model.named_modules()):
        prefix = f"{name}." if name else ""
        weight = state.get(f"{prefix}weight", state.get(f"{prefix}running_mean"))  # a norm without affine: its statistics
        current = getattr(module, "weight", None)
        current = getattr(module, "running_mean", None) if current is None else current
        if weight is None or not isinstance(current, torch.Tensor) or current.shape == weight.shape:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _resized(module, weight, state.get(f"{prefix}bias")))


def load(path: str | Path) -> nn.Module:
    """The ticket's network (the export folder, or its weights file), in eval mode."""
    weights = _weights_path(path)
    metadata = read_metadata(weights)
    architecture = _architecture(weights.parent / metadata["architecture"]["source"])
    model = getattr(architecture, metadata["model"]["class"])(**metadata["model"]["arguments"])
    state = load_file(str(weights))
    _fit_shapes(model, state)
    model.load_state_dict(state, strict=True)
    return model.eval()


if __name__ == "__main__":
    import sys

    folder = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent)
    network, info = load(folder), read_metadata(folder)
    shape = info["input"]["shape"]
    print(f"{info['model']['name']}: {sum(p.numel() for p in network.parameters()):,} parameters, input {shape}, "
          f"{info['classes']['count']} classes, sparsity {info['sparsity']['effective']:.1%}")
