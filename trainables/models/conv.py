"""Frankle & Carbin's Conv-2/4/6: pairs of 3x3 convs, each pair followed by 2x2 max-pooling.

At width 64 the channels are 64, 128, 256 per pair and the head is FC-256-256-classes, as in the
paper; `width` scales all of it, so width 16 is the same shape at 1/16 of the weights.
"""
from __future__ import annotations

from torch import nn

from lth_sweep.trainables.models.base import PrunableModel


class ConvNet(PrunableModel):
    def __init__(self, *, depth: int, in_channels: int, image_size: int, num_classes: int, width: int = 64):
        super().__init__()
        if depth not in (2, 4, 6):
            raise ValueError(f"Conv-N exists for N in 2, 4, 6, not {depth}")
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for pair in range(depth // 2):
            out = width * 2**pair
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU()]
            layers += [nn.Conv2d(out, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels, size = out, size // 2
        if size < 1:
            raise ValueError(f"conv{depth} needs images of at least {2 ** (depth // 2)} pixels, got {image_size}")
        self.features = nn.Sequential(*layers)
        hidden = width * 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * size * size, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.fc = nn.Linear(hidden, num_classes)

    #: the last conv, where Grad-CAM looks
    @property
    def gradcam_layer(self) -> nn.Module:
        return [m for m in self.features if isinstance(m, nn.Conv2d)][-1]

    def embed(self, x):
        return self.classifier(self.features(x))
