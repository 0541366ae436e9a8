"""Wide ResNet-(6n+4)-k (Zagoruyko & Komodakis 2016), the CIFAR WRN of Chen et al.: a 3x3 stem
conv to 16 channels, then 3 stages of n pre-activation basic blocks (BN-ReLU-conv, twice) with
16k, 32k, 64k channels, a final BN-ReLU and global average pooling. `width` is the widen factor k;
WRN-28-10 (n = 4, k = 10) has 36.5M parameters. No dropout (the papers' LTH runs use none).

A shape-changing shortcut is a 1x1 conv on the block's pre-activated input, as in the original.
The stem conv (432 weights) is left dense by default, as for the CIFAR ResNets.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from lth_sweep.trainables.models.base import PrunableModel


class WideBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(out)
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + identity


class WideResNet(PrunableModel):
    default_excluded = ("conv.weight",)

    def __init__(self, *, depth: int, in_channels: int, image_size: int, num_classes: int, width: int = 10):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"a Wide ResNet has depth 6n+4 with n >= 1 (16, 22, 28, 40, ...), not {depth}")
        self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        blocks, channels = [], 16
        for stage, out in enumerate((16 * width, 32 * width, 64 * width)):
            for index in range((depth - 4) // 6):
                blocks.append(WideBlock(channels, out, 2 if stage > 0 and index == 0 else 1))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(channels, num_classes)

    def norm_after(self) -> dict[str, str]:
        # Only conv1 feeds a norm alone (bn2); conv2, the shortcut and the stem feed residual sums.
        return {f"blocks.{index}.conv1": f"blocks.{index}.bn2" for index in range(len(self.blocks))}

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.relu

    def embed(self, x):
        out = self.relu(self.bn(self.blocks(self.conv(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)
