"""ResNet-18 and ResNet-50 as in torchvision (He et al. 2016), built from torchvision's blocks with
torchvision's parameter names and initialisation, so torchvision's checkpoints load into them.

`width` is the stem's channel count (64 = torchvision); the stages have w, 2w, 4w, 8w planes.
Images of at most 64 pixels (CIFAR, Tiny-ImageNet) get the stem of the usual CIFAR ResNet-18/50:
a 3x3 stride-1 conv1 and no max-pool, so a 32-pixel image reaches layer4 at 4x4 rather than 1x1. Larger images get the ImageNet stem (7x7 stride-2 conv1, 3x3 max-pool). The stem
is part of the architecture, so ImageNet weights load only with the ImageNet stem (image size > 64).

conv1 is left dense by default (it reads the colour channels and is customary to spare).
"""
from __future__ import annotations

from functools import partial

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from lth_sweep.trainables.models.base import PrunableModel, conventional_norm_pairs
from lth_sweep.trainables.models.pretrained import load_pretrained

#: largest image size that gets the CIFAR stem
CIFAR_STEM_MAX_SIZE = 64


Block = type[BasicBlock | Bottleneck]


def _stage(block: Block, in_channels: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """torchvision's `ResNet._make_layer`: a projection shortcut where the shape changes."""
    out = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out, 1, stride, bias=False), nn.BatchNorm2d(out))
    rest = (block(out, planes) for _ in range(blocks - 1))
    return nn.Sequential(block(in_channels, planes, stride, downsample), *rest)


class TorchvisionResNet(PrunableModel):
    default_excluded = ("conv1.weight",)

    def __init__(
        self,
        *,
        block: Block,
        layers: tuple[int, int, int, int],
        in_channels: int,
        image_size: int,
        num_classes: int,
        width: int = 64,
        weights: str | None = None,
    ):
        super().__init__()
        self.cifar_stem = image_size <= CIFAR_STEM_MAX_SIZE
        if self.cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        channels = width
        for index, (planes, blocks) in enumerate(zip((width, 2 * width, 4 * width, 8 * width), layers)):
            setattr(self, f"layer{index + 1}", _stage(block, channels, planes, blocks, 1 if index == 0 else 2))
            channels = planes * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if weights is not None:
            hint = f"image size <= {CIFAR_STEM_MAX_SIZE} selects the CIFAR stem (3x3 conv1, no max-pool)"
            load_pretrained(self, weights, hint=hint if self.cifar_stem else "")

    def norm_after(self) -> dict[str, str]:
        return conventional_norm_pairs(self)

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.layer4

    def embed(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


resnet18 = partial(TorchvisionResNet, block=BasicBlock, layers=(2, 2, 2, 2))
resnet50 = partial(TorchvisionResNet, block=Bottleneck, layers=(3, 4, 6, 3))
