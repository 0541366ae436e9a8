"""Dataset registry and the shared in-memory types every trainable consumes.

Datasets are small enough to live entirely in memory as tensors, so a loader
simply returns a fully materialised :class:`Dataset`; batching is left to the
caller. Loaders receive the config's data spec but only read plain attributes
(``name, image_size, train_size, test_size, ood_size, seed, path``) so this
package never depends on the config module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass
class ImageSplit:
    """One split. ``concepts``/``masks`` are the explanation ground truth (or None)."""

    images: torch.Tensor  # float32 (N, C, H, W), roughly zero mean / unit std
    labels: torch.Tensor  # int64 (N,)
    concepts: torch.Tensor | None = None  # bool (N, K)
    masks: torch.Tensor | None = None  # bool (N, H, W)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Dataset:
    name: str
    train: ImageSplit
    test: ImageSplit
    ood: ImageSplit | None
    class_names: list[str]
    concept_names: list[str]
    class_concepts: list[list[int]]  # per class: indices of its defining concepts
    # Per-channel constants the images were normalised with: pixels = images * std + mean in [0, 1].
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def to_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images back to pixel values in [0, 1] (for corruptions, epsilons, plots)."""
        return images * self._column(self.std, images) + self._column(self.mean, images)

    def from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self._column(self.mean, pixels)) / self._column(self.std, pixels)

    @staticmethod
    def _column(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(values, dtype=like.dtype).view(1, -1, 1, 1)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-2])


DataLoader = Callable[[Any], Dataset]


def derive_seed(seed: int, split: str) -> int:
    """Stable per-split seed. Python's hash() is salted per process, so use sha256."""
    digest = hashlib.sha256(f"{int(seed)}:{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, split: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, split))


from . import digits, shapes  # noqa: E402  (submodules use the helpers above)

DATASETS: dict[str, DataLoader] = {"shapes": shapes.load, "digits": digits.load}


def load_dataset(spec: Any) -> Dataset:
    """Build the dataset named by ``spec.name``."""
    try:
        loader = DATASETS[spec.name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise ValueError(f"unknown dataset {spec.name!r}; known datasets: {known}") from None
    return loader(spec)


__all__ = [
    "DATASETS",
    "DataLoader",
    "Dataset",
    "ImageSplit",
    "derive_seed",
    "load_dataset",
    "make_generator",
]
