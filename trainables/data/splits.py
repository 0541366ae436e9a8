"""The shared types every loader builds and every trainable consumes: a split in memory
(`ImageSplit`) or decoded on demand (`LazySplit`), a `Dataset` of splits, and the seeded generators
that make sub-sampling reproducible. Loaders import these from here, not from the package, so
the package can import its loaders at the top."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .decode import Item, box_masks, original_size, prepare

Indices = torch.Tensor | Sequence[int] | slice


@dataclass
class ImageSplit:
    """One split in memory. ``concepts``/``masks`` are the explanation ground truth (or None)."""

    images: torch.Tensor  # float32 (N, C, H, W), roughly zero mean / unit std
    labels: torch.Tensor  # int64 (N,)
    concepts: torch.Tensor | None = None  # bool (N, K)
    masks: torch.Tensor | None = None  # bool (N, H, W)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def batch(self, indices: Indices) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[indices], self.labels[indices]

    def subset(self, indices: Indices) -> "ImageSplit":
        pick = _index_tensor(indices, len(self))
        return ImageSplit(
            self.images[pick],
            self.labels[pick],
            None if self.concepts is None else self.concepts[pick],
            None if self.masks is None else self.masks[pick],
        )


@dataclass(eq=False)
class LazySplit:
    """One split decoded on demand: image files, or raw uint8 pixels kept at native resolution.

    ``batch`` decodes, resizes and normalises only the requested images (JPEGs at reduced scale),
    exactly as the in-memory split built from the same items would hold them. Masks come from
    object boxes (x, y, w, h in original pixels); the full ``masks`` tensor is built on first
    access (it reads every file's header), so analysis should prefer ``subset(indices).masks``.
    """

    items: Sequence[Item]  # list of file paths, or a uint8 array (N, H, W[, C])
    labels: torch.Tensor  # int64 (N,)
    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    concepts: torch.Tensor | None = None  # bool (N, K)
    boxes: torch.Tensor | None = None  # float (N, 4)
    _masks: torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    @property
    def images(self) -> torch.Tensor:
        raise TypeError("a file-backed split holds no image tensor: use split.batch(indices) or split.subset(indices)")

    @property
    def masks(self) -> torch.Tensor | None:
        if self.boxes is not None and self._masks is None:
            self._masks = box_masks(self.boxes, [original_size(item) for item in self.items], self.size)
        return self._masks

    def _items(self, pick: torch.Tensor) -> Sequence[Item]:
        if isinstance(self.items, np.ndarray):
            return self.items[pick.numpy()]
        return [self.items[i] for i in pick.tolist()]

    def batch(self, indices: Indices) -> tuple[torch.Tensor, torch.Tensor]:
        pick = _index_tensor(indices, len(self))
        return prepare(self._items(pick), self.size, self.channels, self.mean, self.std), self.labels[pick]

    def subset(self, indices: Indices) -> ImageSplit:
        """The chosen images decoded into memory (for analysis: a few hundred at a time)."""
        pick = _index_tensor(indices, len(self))
        items = self._items(pick)
        masks = None
        if self.boxes is not None:
            masks = box_masks(self.boxes[pick], [original_size(item) for item in items], self.size)
        concepts = None if self.concepts is None else self.concepts[pick]
        return ImageSplit(prepare(items, self.size, self.channels, self.mean, self.std), self.labels[pick], concepts, masks)


Split = ImageSplit | LazySplit


def _index_tensor(indices: Indices, length: int) -> torch.Tensor:
    if isinstance(indices, slice):
        return torch.arange(length)[indices]
    pick = torch.as_tensor(indices, dtype=torch.int64) if not isinstance(indices, torch.Tensor) else indices
    if pick.dtype == torch.bool:
        return pick.nonzero()[:, 0]
    return pick.long().reshape(-1)


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    ood: Split | None
    class_names: list[str]
    concept_names: list[str]
    class_concepts: list[list[int]]  # per class: indices of its defining concepts
    # Per-channel constants the images were normalised with: pixels = images * std + mean in [0, 1].
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    # Images for selecting (the early-stopping iteration), disjoint from train and test; see
    # `load_dataset` for where they come from. None unless the spec asks (`validation_size`).
    validation: Split | None = None

    def to_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images back to pixel values in [0, 1] (for corruptions, epsilons, plots)."""
        return images * self._column(self.std, images) + self._column(self.mean, images)

    def from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self._column(self.mean, pixels)) / self._column(self.std, pixels)

    @staticmethod
    def _column(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
        # on the input's device: the analysis attacks and corrupts images on its actor's GPU
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train.image_shape[0])

    @property
    def image_size(self) -> int:
        return int(self.train.image_shape[-1])


DataLoader = Callable[[Any], Dataset]


def derive_seed(seed: int, split: str) -> int:
    """Stable per-split seed. Python's hash() is salted per process, so use sha256."""
    digest = hashlib.sha256(f"{int(seed)}:{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, split: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, split))


def restrict(split: Split, indices: Indices) -> Split:
    """The images `indices` of `split`, stored as `split` is (a file-backed split stays lazy)."""
    pick = _index_tensor(indices, len(split))
    if isinstance(split, ImageSplit):
        return split.subset(pick)
    cut = lambda tensor: None if tensor is None else tensor[pick]  # noqa: E731
    return replace(
        split, items=split._items(pick), labels=split.labels[pick], concepts=cut(split.concepts),
        boxes=cut(split.boxes), _masks=cut(split._masks),
    )
