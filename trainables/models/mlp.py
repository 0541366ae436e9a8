"""LeNet-300-100, the fully connected network of Frankle & Carbin's MNIST experiments."""
from __future__ import annotations

from torch import nn

from lth_sweep.trainables.models.base import PrunableModel


class LeNet300100(PrunableModel):
    def __init__(self, *, in_channels: int, image_size: int, num_classes: int, width: int = 300):
        super().__init__()
        hidden = (width, width // 3)
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * image_size * image_size, hidden[0]),
            nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
        )
        self.fc = nn.Linear(hidden[1], num_classes)

    def embed(self, x):
        return self.layers(x)
