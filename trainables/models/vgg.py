"""CIFAR VGG-16 and VGG-19 with batch norm, as in Frankle & Carbin (VGG-19) and Chen et al.
(VGG-16): 3x3 conv-BN-ReLU stacks of w, 2w, 4w, 8w, 8w channels with 2x2 max-pooling between the
first four stages, global average pooling, and a single linear classifier (no FC-4096 head: that
is the ImageNet VGG). At width 64 VGG-16 has 14.7M parameters and VGG-19 20.0M, the papers' counts.

Convs carry no bias (the norm after them makes it redundant). The classifier is left dense by
default, as in Frankle & Carbin's VGG-19 (conv layers pruned, the output layer not); every conv,
the first included, is pruned.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from lth_sweep.trainables.models.base import PrunableModel, conventional_norm_pairs
from lth_sweep.trainables.models.inputs import require_image_size

POOL = "M"
PLANS: dict[int, list[int | str]] = {
    16: [1, 1, POOL, 2, 2, POOL, 4, 4, 4, POOL, 8, 8, 8, POOL, 8, 8, 8],
    19: [1, 1, POOL, 2, 2, POOL, 4, 4, 4, 4, POOL, 8, 8, 8, 8, POOL, 8, 8, 8, 8],
}


class VGG(PrunableModel):
    default_excluded = ("fc.weight",)

    def __init__(self, *, depth: int, in_channels: int, image_size: int, num_classes: int, width: int = 64):
        super().__init__()
        if depth not in PLANS:
            raise ValueError(f"CIFAR VGG exists here for depths {sorted(PLANS)}, not {depth}")
        require_image_size(f"vgg{depth}", image_size, 2 ** PLANS[depth].count(POOL))
        layers: list[nn.Module] = []
        channels = in_channels
        for step in PLANS[depth]:
            if step == POOL:
                layers.append(nn.MaxPool2d(2))
                continue
            out = width * step
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def norm_after(self) -> dict[str, str]:
        return conventional_norm_pairs(self)

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.features[-1]  # the last conv's ReLU

    def embed(self, x):
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
