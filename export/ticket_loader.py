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
    logits = model(preprocess(pixels, info))        # pixels: uint8 0..255, (N, H, W, C) or (N, C, H, W)
    names = [info["classes"]["names"][i] for i in logits.argmax(1)]

The network takes images as the sweep's data pipeline made them, outside the network: resized,
scaled to [0, 1] and normalised per channel; `preprocess` does exactly that from raw uint8 pixels
(info["input"]["preprocessing"] lists the steps). Class i is info["classes"]["names"][i].

A slim ticket (`--slim`) has fewer channels than its architecture's arguments say: `load`
rebuilds each such layer at the saved shape before loading the weights.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

METADATA_KEY = "lth.ticket"
WEIGHTS_FILE = "weights.safetensors"
FORMAT_VERSIONS = {"1"}
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as Pillow's convert("L")


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


def preprocess(images, metadata: dict, layout: str | None = None) -> torch.Tensor:
    """Raw pixels as the network takes them: float32 (N, C, size, size), computed exactly as
    lth-sweep's data pipeline made the images the ticket was trained and tested on (its
    trainables/data/decode.py). `images`: uint8 in 0..255, a tensor or array (N, H, W, C) or
    (N, C, H, W), RGB, RGBA or grey, any height and width; `layout` "NHWC" or "NCHW" where the
    shape does not tell; `metadata`: `read_metadata`'s dict."""
    channels, size, _ = metadata["input"]["shape"]
    normalisation = metadata["input"]["normalisation"]
    pixels = torch.as_tensor(images)
    if pixels.dtype != torch.uint8:
        raise ValueError(f"preprocess takes uint8 pixels in 0..255, not {pixels.dtype}; floats in [0, 1]: (x * 255).round().byte()")
    if pixels.ndim != 4:
        raise ValueError(f"preprocess takes a batch, (N, H, W, C) or (N, C, H, W), not shape {tuple(pixels.shape)}; one image: x[None]")
    if (layout or _layout(pixels.shape)) == "NCHW":
        pixels = pixels.permute(0, 2, 3, 1)
    # (N, H, W, C) in memory, then viewed as (N, C, H, W), as the pipeline holds decoded pixels
    x = _channels(pixels, channels).contiguous().permute(0, 3, 1, 2).float() / 255.0
    x = _resize_crop(x, size)
    mean = torch.tensor(normalisation["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(normalisation["std"], dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


def _layout(shape) -> str:
    last, second = shape[-1] in (1, 3, 4), shape[1] in (1, 3, 4)
    if last != second:
        return "NHWC" if last else "NCHW"
    raise ValueError(f"cannot tell which dimension of shape {tuple(shape)} holds the channels: pass layout='NHWC' or 'NCHW'")


def _channels(pixels: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, H, W, have) -> (N, H, W, channels)."""
    have = pixels.shape[-1]
    if have == channels:
        return pixels
    if channels == 1 and have in (3, 4):
        return torch.round(pixels[..., :3].float() @ torch.tensor(LUMA)).to(torch.uint8)[..., None]
    if channels == 3 and have in (1, 4):
        return pixels.expand(*pixels.shape[:3], 3) if have == 1 else pixels[..., :3]
    raise ValueError(f"the ticket takes {channels} channel(s); cannot make them from {have}")


def _resize_crop(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """float (N, C, H, W) in [0, 1]: the shorter side to `size`, then the centred size x size window."""
    height, width = pixels.shape[-2:]
    if height == width == size:
        return pixels
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    resized = F.interpolate(pixels, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    return resized[..., top : top + size, left : left + size].clamp(0, 1)


if __name__ == "__main__":
    import sys

    folder = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent)
    network, info = load(folder), read_metadata(folder)
    shape = info["input"]["shape"]
    print(f"{info['model']['name']}: {sum(p.numel() for p in network.parameters()):,} parameters, input {shape}, "
          f"{info['classes']['count']} classes, sparsity {info['sparsity']['effective']:.1%}")
