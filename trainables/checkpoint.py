"""Round checkpoints as plain tensors (safetensors) plus a small JSON file: no pickles.

`state.json` carries the sha256 of every tensor file written with it; loading checks them all
before reading any, so a truncated or altered checkpoint is refused with the file named.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lth_sweep.trainables.lineage import LineageState


class CheckpointCorrupt(RuntimeError):
    """A checkpoint file is missing, truncated or altered; it was not loaded."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_state(
    directory: str | Path, state: LineageState, extra: dict | None = None, evaluated: dict[str, torch.Tensor] | None = None,
    evaluated_masks: dict[str, torch.Tensor] | None = None,
) -> None:
    """`evaluated` and `evaluated_masks`: the network the round's metrics describe and its masks,
    when it is not the ticket itself (the reinit and shuffle controls); kept so a restarted trial
    can still hand that round to the analysis."""
    directory = Path(directory)
    files = {
        "weights.safetensors": state.weights,
        "masks.safetensors": state.masks,
        "rng.safetensors": {"torch": torch.get_rng_state()},
    }
    if evaluated is not None and evaluated is not state.weights:
        files["evaluated.safetensors"] = evaluated
    if evaluated_masks is not None and evaluated_masks is not state.masks:
        files["evaluated_masks.safetensors"] = evaluated_masks
    for name, tensors in files.items():
        save_file({k: v.contiguous() for k, v in tensors.items()}, directory / name)
    digests = {name: sha256(directory / name) for name in files}
    (directory / "state.json").write_text(json.dumps({"round": state.round, **(extra or {}), "sha256": digests}))


def _verified_meta(directory: Path) -> dict:
    path = directory / "state.json"
    try:
        meta = json.loads(path.read_text())
        digests = meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointCorrupt(f"checkpoint {path}: unreadable or without checksums ({type(error).__name__}: {error})") from None
    for name, expected in digests.items():
        file = directory / name
        if not file.is_file():
            raise CheckpointCorrupt(f"checkpoint file {file} is missing")
        if sha256(file) != expected:
            raise CheckpointCorrupt(f"checkpoint file {file} is truncated or altered: its sha256 differs from the one saved with it")
    return meta


def load_evaluated(directory: str | Path, state: LineageState) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The evaluated network's weights and masks (the ticket's where no control was evaluated apart).
    Call after `load_state`, which verified every file of the checkpoint."""
    weights, masks = Path(directory) / "evaluated.safetensors", Path(directory) / "evaluated_masks.safetensors"
    return (
        load_file(weights) if weights.exists() else state.weights,
        load_file(masks) if masks.exists() else state.masks,
    )


def load_state(directory: str | Path) -> tuple[LineageState, dict]:
    """Raises `CheckpointCorrupt` (naming the file) before loading anything if a checksum fails."""
    directory = Path(directory)
    meta = _verified_meta(directory)
    meta.pop("sha256")
    torch.set_rng_state(load_file(directory / "rng.safetensors")["torch"])
    state = LineageState(
        round=meta.pop("round"),
        weights=load_file(directory / "weights.safetensors"),
        masks=load_file(directory / "masks.safetensors"),
    )
    return state, meta
