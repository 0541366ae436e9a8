"""GoogLeNet (Szegedy et al. 2015) and Inception-V3 (Szegedy et al. 2016), torchvision's
implementations: torchvision's parameter names and `init_weights=True` initialisation, auxiliary
classifiers off (a checkpoint's aux1/aux2/AuxLogits entries are dropped when loading), no input
transform (the datasets normalise their own images). The stems are torchvision's, fixed at 3
input channels: grey images are repeated to three. Their channel counts are fixed (no `width`).

Smallest inputs the stride-32 stacks accept: GoogLeNet 15 px, Inception-V3 75 px (torchvision's
documented minimum). Up to 46 px (GoogLeNet) and 106 px (Inception-V3) the last feature map, where
Grad-CAM looks, is 1x1, so its maps are constant there. The stem conv is left dense by default
(it reads the colour channels), as for the ResNets.
"""
from __future__ import annotations

from torch import nn
from torchvision.models import GoogLeNet as TorchvisionGoogLeNet
from torchvision.models import Inception3

from lth_sweep.trainables.models.base import PrunableModel, conventional_norm_pairs
from lth_sweep.trainables.models.inputs import as_rgb, require_image_size, require_rgb_or_grey
from lth_sweep.trainables.models.pretrained import load_pretrained


class TorchvisionInception(PrunableModel):
    """Adopts the layers of a torchvision network under their own names and runs them in order:
    every child before `avgpool` is a feature stage, the last of them gives the Grad-CAM map."""

    name: str
    minimum_size: int
    aux: tuple[str, ...]

    def __init__(self, *, in_channels: int, image_size: int, num_classes: int, weights: str | None = None):
        super().__init__()
        require_image_size(self.name, image_size, self.minimum_size)
        require_rgb_or_grey(self.name, in_channels)
        for name, child in self.build(num_classes).named_children():
            self.add_module(name, child)
        names = list(self._modules)
        self._stages = names[: names.index("avgpool")]
        if weights is not None:
            load_pretrained(self, weights, ignore=self.aux)

    def build(self, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def norm_after(self) -> dict[str, str]:
        return conventional_norm_pairs(self)

    @property
    def gradcam_layer(self) -> nn.Module:
        return getattr(self, self._stages[-1])

    def embed(self, x):
        x = as_rgb(x)
        for name in self._stages:
            x = getattr(self, name)(x)
        return self.dropout(self.avgpool(x).flatten(1))


class GoogLeNet(TorchvisionInception):
    name, minimum_size, aux = "googlenet", 15, ("aux1.", "aux2.")
    default_excluded = ("conv1.conv.weight",)

    def build(self, num_classes: int) -> nn.Module:
        return TorchvisionGoogLeNet(num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True)


class InceptionV3(TorchvisionInception):
    name, minimum_size, aux = "inception_v3", 75, ("AuxLogits.",)
    default_excluded = ("Conv2d_1a_3x3.conv.weight",)

    def build(self, num_classes: int) -> nn.Module:
        return Inception3(num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True)
