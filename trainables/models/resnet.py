"""CIFAR-style ResNet-(6n+2) (He et al. 2016): 3 stages of n basic blocks, widths w, 2w, 4w;
ResNet-20 has n = 3, ResNet-56 n = 9.

Shortcuts that change shape are 1x1 convs with batch norm (option B), which are prunable weights
too. The 3x3 stem conv (432 weights at width 16) is left dense by default, as is customary.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from lth_sweep.trainables.models.base import PrunableModel


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(PrunableModel):
    default_excluded = ("conv.weight",)

    def __init__(self, *, depth: int, in_channels: int, image_size: int, num_classes: int, width: int = 16):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...), not {depth}")
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, channels = [], width
        for stage, out in enumerate((width, 2 * width, 4 * width)):
            for index in range((depth - 2) // 6):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, out, stride))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)

    def norm_after(self) -> dict[str, str]:
        pairs = {"conv": "bn"}
        for index, block in enumerate(self.blocks):
            pairs |= {f"blocks.{index}.conv1": f"blocks.{index}.bn1", f"blocks.{index}.conv2": f"blocks.{index}.bn2"}
            if len(block.shortcut):
                pairs[f"blocks.{index}.shortcut.0"] = f"blocks.{index}.shortcut.1"
        return pairs

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.blocks[-1]

    def embed(self, x):
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)
