"""Input checks for models with a minimum image size or a library's fixed 3-channel stem."""
from __future__ import annotations

import torch


def require_image_size(model: str, image_size: int, minimum: int) -> None:
    if image_size < minimum:
        raise ValueError(f"{model} needs images of at least {minimum}x{minimum} pixels, got {image_size}x{image_size}")


def require_rgb_or_grey(model: str, in_channels: int) -> None:
    if in_channels not in (1, 3):
        raise ValueError(f"{model} reads 3-channel images (1-channel ones are repeated), got {in_channels} channels")


def as_rgb(x: torch.Tensor) -> torch.Tensor:
    """A grey image as three equal channels, as is customary for ImageNet-shaped stems."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
