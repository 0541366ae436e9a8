"""A ticket that takes the pixels a user has: images scaled to [0, 1], as the dataset stores them
before its normalisation. The registry's model (`model_registry.py`) is this one, so that
`mlflow.pyfunc.load_model(...).predict(pixels)` needs no preprocessing code: raw pixels fed to the
bare network (which expects normalised images) silently lose accuracy (0.902 against 0.997 on the
quickstart). Resizing and channel conversion stay with the caller: the signature fixes the shape.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

#: What the metadata's `input.normalisation.how` says of a network wrapped here.
INSIDE = "inside the model: its first operation is, per channel, (pixels in [0, 1] - mean) / std"


class PixelInput(nn.Module):
    """`network` behind its dataset's per-channel normalisation, computed as the data pipeline
    computes it (`trainables/data/decode.py`, `normalise`)."""

    def __init__(self, network: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network((pixels - self.mean) / self.std)

    def pixels_of(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (the pipeline's) back as pixels in [0, 1]."""
        return (images * self.std + self.mean).clamp(0, 1)


def taking_pixels(network: nn.Module, metadata: dict) -> tuple[PixelInput, dict]:
    """The wrapped network and its metadata, whose `input` now describes pixels in [0, 1]."""
    normalisation = metadata["input"]["normalisation"]
    wrapped = PixelInput(network, normalisation["mean"], normalisation["std"]).eval()
    described = copy.deepcopy(metadata)
    described["input"]["range"] = [0.0, 1.0]
    described["input"]["normalisation"]["how"] = INSIDE
    steps = described["input"]["preprocessing"]["steps"]
    steps[:] = [step for step in steps if not step.startswith("normalise:")]
    described["input"]["preprocessing"]["to"] += ", pixels in [0, 1] (the model normalises them)"
    return wrapped, described
