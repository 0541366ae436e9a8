"""Model registry: one module per family, one line per model here.

Every model is a `PrunableModel`: it names the weights pruning may touch and the ones it leaves
alone by default (biases and norm layers are never candidates at all).
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from trainables.models.base import PrunableModel
from trainables.models.conv import ConvNet
from trainables.models.mlp import LeNet300100
from trainables.models.resnet import ResNet20

ModelFactory = Callable[..., PrunableModel]

MODELS: dict[str, ModelFactory] = {
    "lenet_300_100": LeNet300100,
    "conv2": partial(ConvNet, depth=2),
    "conv4": partial(ConvNet, depth=4),
    "conv6": partial(ConvNet, depth=6),
    "resnet20": ResNet20,
}


def build_model(spec, *, in_channels: int, image_size: int, num_classes: int) -> PrunableModel:
    """Builds the model a `ModelSpec` names; initialisation draws from torch's global RNG."""
    kwargs = {} if spec.width is None else {"width": spec.width}
    model = MODELS[spec.name](in_channels=in_channels, image_size=image_size, num_classes=num_classes, **kwargs)
    return model


__all__ = ["MODELS", "PrunableModel", "build_model", "nn"]
