"""Pretrained weights from a local file (`ModelSpec.weights`): nothing is ever downloaded.

A file is a state dict saved with `torch.save` (read back with `weights_only=True`: no pickles) or
a `.safetensors` file, optionally wrapped as {"state_dict": ...} and with DataParallel's "module."
prefixes. Keys are checked strictly; the only tolerated differences are entries the model does not
build (e.g. auxiliary classifiers, named by the caller), BatchNorm counters, and a classifier head
for another number of classes, which keeps its fresh initialisation.
"""
from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

log = logging.getLogger(__name__)

#: how many offending keys an error lists before it abbreviates
SHOWN = 12


def _state_dict_error(text: str) -> str:
    """torch's `load_state_dict` error, every key on its own line, to one line naming the first few
    keys of each kind in torch's words (a CLIP checkpoint can list hundreds)."""
    header, *lines = [line.strip() for line in text.split("\n") if line.strip()]
    parts, mismatches = [header], []
    for line in lines:
        label, sep, keys = line.partition(" in state_dict: ")
        if sep:  # Missing key(s) / Unexpected key(s): "a", "b", ...
            names = [name.strip() for name in keys.rstrip(". ").split(", ")]
            parts.append(f"{label}: {_listed(names)}.")
        else:  # size mismatch for NAME: copying a param with shape ...
            mismatches.append(line)
    parts += mismatches[:SHOWN]
    if len(mismatches) > SHOWN:
        parts.append(f"and {len(mismatches) - SHOWN} more size mismatches.")
    return " ".join(parts)


def brief(error: Exception) -> str:
    """The informative part of a loader's error, on one line (torch's weights_only errors run to
    paragraphs, its load_state_dict errors to a line per key)."""
    text = str(error)
    if "Error(s) in loading state_dict" in text:
        return _state_dict_error(text[text.index("Error(s) in loading state_dict"):])
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|\. Please|$)", text, re.S)
    line = " ".join((found.group(1) if found else text).split())
    return (line[:300] + " ...") if len(line) > 300 else line or type(error).__name__


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; ValueError naming the file and why it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model.weights: no such file: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"model.weights: {path} is empty")
    try:
        with warnings.catch_warnings():  # e.g. torch's note on the pickle protocol: the error says enough
            warnings.simplefilter("ignore")
            if path.suffix == ".safetensors":
                state = load_file(path)
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same message
        kind = "a safetensors file" if path.suffix == ".safetensors" else (
            "a state dict (torch.load with weights_only=True, which reads tensors but no pickled objects; "
            "a .safetensors file is read by its suffix)"
        )
        raise ValueError(f"model.weights: cannot read {path} as {kind}: {brief(error)}") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(value, torch.Tensor) for value in state.values()):
        if isinstance(state, dict) and state:
            odd = [f"{key!r} ({type(value).__name__})" for key, value in state.items() if not isinstance(value, torch.Tensor)]
            what = f"entries that are not tensors: {_listed(odd)}"
        else:
            what = f"{'an empty ' if not state and isinstance(state, (dict, list)) else ''}{type(state).__name__}"
        raise ValueError(
            f"model.weights: {path} holds no state dict of tensors ({what}); expected parameter names mapped to "
            "tensors, as model.state_dict() gives, optionally wrapped as {'state_dict': ...}"
        )
    return {key.removeprefix("module."): value for key, value in state.items()}


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:SHOWN]) + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def load_pretrained(
    model: nn.Module, path: str | Path, *, head: str = "fc", ignore: tuple[str, ...] = (), hint: str = ""
) -> None:
    """Loads the file at `path` into `model`. File keys starting with one of `ignore` are dropped;
    a `head` linear layer with another number of outputs keeps its initialisation (logged)."""
    state = {key: value for key, value in read_state_dict(path).items() if not key.startswith(ignore)}
    own = model.state_dict()
    weight = f"{head}.weight"
    if weight in state and weight in own:
        file_shape, model_shape = state[weight].shape, own[weight].shape
        if file_shape[0] != model_shape[0] and file_shape[1:] == model_shape[1:]:
            log.info(
                "model.weights %s: %s has %d outputs, the model %d classes: the head is re-initialised",
                path, head, file_shape[0], model_shape[0],
            )
            state = {key: value for key, value in state.items() if not key.startswith(f"{head}.")}
            own = {key: value for key, value in own.items() if not key.startswith(f"{head}.")}
    missing = sorted(key for key in own.keys() - state.keys() if not key.endswith("num_batches_tracked"))
    unexpected = sorted(state.keys() - own.keys())
    mismatched = sorted(
        f"{key} (file {tuple(state[key].shape)}, model {tuple(own[key].shape)})"
        for key in state.keys() & own.keys()
        if state[key].shape != own[key].shape
    )
    if missing or unexpected or mismatched:
        problems = [
            f"{label}: {_listed(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
            if keys
        ]
        raise ValueError(
            f"model.weights: {path} does not fit {type(model).__name__}: "
            + "; ".join(problems)
            + (f". {hint}" if hint else "")
        )
    model.load_state_dict(state, strict=False)
