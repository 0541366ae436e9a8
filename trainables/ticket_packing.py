"""A round's ticket stored compactly, and rebuilt exactly.

A pruned entry is an exact zero, so a masked weight is its kept values (in row-major order) plus
its mask packed 8 entries to a byte; every other tensor of the state dict (biases, norms, buffers,
unpruned layers) is stored in full. At 90% sparsity a float32 weight takes 0.525 bytes an entry
instead of 5 (its dense values and a bool mask). A weight with a non-zero entry outside its mask
(never left by training, which re-zeroes them) is stored in full beside its mask, so packing is
never lossy.

One safetensors file holds it all; its metadata names each tensor's shape, dtype and storage.
Rebuilding gives the weights bit for bit: masking a negative weight leaves -0.0, so the signs of
the pruned zeros are kept too (one more bit each, only where some pruned zero is negative).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "lth-round-ticket"
FORMAT_VERSION = "1"
_KEPT, _FULL, _BITS, _SIGNS = "kept/", "full/", "mask/", "pruned_signs/"
_LAYOUT = "lth.layout"
_BIT_VALUES = 2 ** torch.arange(8, dtype=torch.uint8)

Tensors = dict[str, torch.Tensor]


class NotATicketFile(ValueError):
    """A file that is not a packed round ticket (or of a format version this code does not read)."""


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor as uint8, 8 entries a byte, first entry in the lowest bit."""
    flat = mask.detach().reshape(-1).to(torch.uint8)
    padded = torch.cat([flat, flat.new_zeros(-flat.numel() % 8)])
    return (padded.view(-1, 8) * _BIT_VALUES).sum(1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    count = 1
    for size in shape:
        count *= size
    bits = (packed.view(-1, 1) & _BIT_VALUES) != 0
    return bits.reshape(-1)[:count].reshape(shape)


def pack_ticket(weights: Tensors, masks: Tensors) -> tuple[Tensors, dict[str, str]]:
    """(tensors, safetensors metadata) for `weights` (a state dict) under `masks` (bool, True = kept)."""
    unknown = sorted(set(masks) - set(weights))
    if unknown:
        raise ValueError(f"masks name tensors the weights do not have: {unknown}")
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, dict] = {}
    for name, value in weights.items():
        value = value.detach().cpu()
        entry = {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
        mask = masks.get(name)
        if mask is None:
            entry["stored"] = "full"
            tensors[_FULL + name] = value.contiguous()
        else:
            mask = mask.detach().cpu().to(torch.bool)
            if mask.shape != value.shape:
                raise ValueError(f"mask of {name} is {tuple(mask.shape)}, the weight {tuple(value.shape)}")
            tensors[_BITS + name] = pack_bits(mask)
            if bool((value[~mask] != 0).any()):
                entry["stored"] = "full+mask"
                tensors[_FULL + name] = value.contiguous()
            else:
                entry["stored"] = "kept"
                tensors[_KEPT + name] = value[mask].contiguous()
                signs = torch.signbit(value[~mask])
                if bool(signs.any()):
                    tensors[_SIGNS + name] = pack_bits(signs)
        layout[name] = entry
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, _LAYOUT: json.dumps(layout)}
    return tensors, metadata


def unpack_ticket(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[Tensors, Tensors]:
    """(weights, masks) as `pack_ticket` was given them, in the same order."""
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise NotATicketFile(
            f"not a packed round ticket of format {FORMAT} version {FORMAT_VERSION} "
            f"(format {metadata.get('format')!r}, version {metadata.get('format_version')!r})"
        )
    weights, masks = {}, {}
    for name, entry in json.loads(metadata[_LAYOUT]).items():
        shape = tuple(entry["shape"])
        if entry["stored"] != "full":
            masks[name] = unpack_bits(tensors[_BITS + name], shape)
        if entry["stored"] == "kept":
            kept = tensors[_KEPT + name]
            value = torch.zeros(shape, dtype=kept.dtype)
            value[masks[name]] = kept
            if _SIGNS + name in tensors:  # the pruned zeros that are -0.0
                pruned = ~masks[name]
                negative = unpack_bits(tensors[_SIGNS + name], (int(pruned.sum()),))
                value[pruned] = torch.where(negative, -0.0, 0.0).to(kept.dtype)
            weights[name] = value
        else:
            weights[name] = tensors[_FULL + name]
    return weights, masks


def save_ticket(path: str | Path, weights: Tensors, masks: Tensors) -> None:
    tensors, metadata = pack_ticket(weights, masks)
    save_file(tensors, str(path), metadata=metadata)


def load_ticket(path: str | Path) -> tuple[Tensors, Tensors]:
    """(weights, masks) of a file `save_ticket` wrote."""
    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata() or {}
        tensors = {key: file.get_tensor(key) for key in file.keys()}
    return unpack_ticket(tensors, metadata)
