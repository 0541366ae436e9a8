"""Round checkpoints as plain tensors (safetensors) plus a small JSON file: no pickles."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from trainables.lineage import LineageState


def save_state(
    directory: str | Path, state: LineageState, extra: dict | None = None, evaluated: dict[str, torch.Tensor] | None = None
) -> None:
    """`evaluated`: the network the round's metrics describe, when it is not the ticket itself (the
    reinit control); kept so a restarted trial can still hand that round to the analysis."""
    directory = Path(directory)
    save_file({k: v.contiguous() for k, v in state.weights.items()}, directory / "weights.safetensors")
    if evaluated is not None and evaluated is not state.weights:
        save_file({k: v.contiguous() for k, v in evaluated.items()}, directory / "evaluated.safetensors")
    save_file({k: v.contiguous() for k, v in state.masks.items()}, directory / "masks.safetensors")
    save_file({"torch": torch.get_rng_state()}, directory / "rng.safetensors")
    (directory / "state.json").write_text(json.dumps({"round": state.round, **(extra or {})}))


def load_evaluated(directory: str | Path, state: LineageState) -> dict[str, torch.Tensor]:
    path = Path(directory) / "evaluated.safetensors"
    return load_file(path) if path.exists() else state.weights


def load_state(directory: str | Path) -> tuple[LineageState, dict]:
    directory = Path(directory)
    meta = json.loads((directory / "state.json").read_text())
    torch.set_rng_state(load_file(directory / "rng.safetensors")["torch"])
    state = LineageState(
        round=meta.pop("round"),
        weights=load_file(directory / "weights.safetensors"),
        masks=load_file(directory / "masks.safetensors"),
    )
    return state, meta
