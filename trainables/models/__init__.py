"""Model registry: one module per family, one line per model here.

Every model is a `PrunableModel`: it names the weights pruning may touch and the ones it leaves
alone by default (biases and norm layers are never candidates at all).
"""
from __future__ import annotations

import importlib
import inspect
from functools import partial
from typing import Callable

from torch import nn

from lth_sweep.trainables.models.base import PrunableModel
from lth_sweep.trainables.models.conv import ConvNet
from lth_sweep.trainables.models.mlp import LeNet300100
from lth_sweep.trainables.models.open_clip_backbone import OpenClipClassifier
from lth_sweep.trainables.models.resnet import CifarResNet
from lth_sweep.trainables.models.vgg import VGG
from lth_sweep.trainables.models.wide_resnet import WideResNet

ModelFactory = Callable[..., PrunableModel]


class Imported:
    """A factory found in its module when first used: the families built on torchvision's modules
    (importing torchvision costs 1.7 s, in the driver and in every worker, and the quickstart's
    Conv-4 does not need it)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def factory(self) -> ModelFactory:
        return getattr(importlib.import_module(self.module), self.name)

    def __call__(self, **options) -> PrunableModel:
        return self.factory()(**options)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.factory())


MODELS: dict[str, ModelFactory] = {
    "lenet_300_100": LeNet300100,
    "conv2": partial(ConvNet, depth=2),
    "conv4": partial(ConvNet, depth=4),
    "conv6": partial(ConvNet, depth=6),
    "resnet20": partial(CifarResNet, depth=20),
    "resnet56": partial(CifarResNet, depth=56),
    "resnet18": Imported(f"{__name__}.torchvision_resnet", "resnet18"),
    "resnet50": Imported(f"{__name__}.torchvision_resnet", "resnet50"),
    "vgg16": partial(VGG, depth=16),
    "vgg19": partial(VGG, depth=19),
    "wrn28_10": partial(WideResNet, depth=28),
    "googlenet": Imported(f"{__name__}.inception", "GoogLeNet"),
    "inception_v3": Imported(f"{__name__}.inception", "InceptionV3"),
    "clip_vit_b32": partial(OpenClipClassifier, clip_model_name="ViT-B-32"),
    "clip_rn50": partial(OpenClipClassifier, clip_model_name="RN50"),
}


def takes(factory: ModelFactory, option: str) -> bool:
    """Whether a model has the `width` or `weights` option."""
    return option in inspect.signature(factory).parameters


def check_options(spec) -> dict:
    """The factory options a `ModelSpec` sets (`width`, `weights`); ValueError naming the field
    if its model has no such option. Cheap: nothing is built (a plan checks this before Ray)."""
    factory = MODELS[spec.name]
    options = {"width": spec.width, "weights": spec.weights}
    for option, value in options.items():
        if value is not None and not takes(factory, option):
            able = sorted(name for name, other in MODELS.items() if takes(other, option))
            raise ValueError(f"model.{option}: {spec.name} has no {option} option; models with one: {', '.join(able)}")
    return {option: value for option, value in options.items() if value is not None}


def build_model(spec, *, in_channels: int, image_size: int, num_classes: int) -> PrunableModel:
    """Builds the model a `ModelSpec` names; initialisation draws from torch's global RNG, and
    `spec.weights` (a local file) are loaded over it."""
    factory = MODELS[spec.name]
    kwargs = check_options(spec)
    return factory(in_channels=in_channels, image_size=image_size, num_classes=num_classes, **kwargs)


__all__ = ["MODELS", "PrunableModel", "build_model", "check_options", "nn"]
