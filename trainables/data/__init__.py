"""Dataset registry and the shared types every trainable consumes.

A loader returns a :class:`Dataset` whose splits are either in memory (:class:`ImageSplit`) or
decoded on demand (:class:`LazySplit`, for image folders too large to hold as float tensors).
Both offer ``len(split)``, ``labels``, ``concepts``, ``masks``, ``image_shape``,
``batch(indices) -> (images, labels)`` and ``subset(indices) -> ImageSplit``. Loaders receive the
config's data spec but only read plain attributes (``name, image_size, train_size, test_size,
ood_size, seed, path``, and where present ``ood_path, ood_format, in_memory``) so this package
never depends on the config module.
"""

from __future__ import annotations

from typing import Any

import torch

from . import cifar, clutter, cub, digits, disk, ham10000, imagefolder, mnist, shapes, svhn
from .splits import DataLoader, Dataset, ImageSplit, LazySplit, Split, derive_seed, make_generator, restrict

# Each entry is callable as a loader and states its facts (`.describe(spec)`, `.validation_apart`):
# generated datasets are `describe.Generated`, on-disk formats `disk.DiskFormat` (plus `check(path)`).
DATASETS: dict[str, DataLoader] = {
    "shapes": shapes.DATASET,
    "clutter": clutter.DATASET,
    "digits": digits.DATASET,
    "mnist": mnist.FORMAT,
    "cifar10": cifar.CIFAR10,
    "cifar100": cifar.CIFAR100,
    "svhn": svhn.FORMAT,
    "imagefolder": imagefolder.IMAGEFOLDER,
    "folder": imagefolder.FOLDER,
    "cub200": cub.FORMAT,
    "ham10000": ham10000.FORMAT,
}


# Loaders that make their validation split apart from train (`spec.validation_size` images):
# asking for one changes no training image. Every other dataset holds it out of train.
SEPARATE_VALIDATION = frozenset(name for name, dataset in DATASETS.items() if dataset.validation_apart)
HELD_OUT_SHARE = 0.1  # at most this share of train is held out for validation




def hold_out_validation(dataset: Dataset, size: int, seed: int) -> None:
    """Moves min(size, 10% of train) training images, a fixed sample drawn from the data seed,
    into `dataset.validation`; they are never trained on. Both parts keep train's order."""
    count = min(int(size), int(len(dataset.train) * HELD_OUT_SHARE))
    if count < 1:
        return
    order = torch.randperm(len(dataset.train), generator=make_generator(seed, f"{dataset.name}/validation"))
    held, kept = order[:count].sort().values, order[count:].sort().values
    dataset.train, dataset.validation = restrict(dataset.train, kept), restrict(dataset.train, held)


def load_dataset(spec: Any) -> Dataset:
    """Build the dataset named by ``spec.name``, with ``spec.validation_size`` (if any) validation
    images: generated apart by the loaders in `SEPARATE_VALIDATION`, held out of train otherwise."""
    try:
        loader = DATASETS[spec.name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise ValueError(f"unknown dataset {spec.name!r}; known datasets: {known}") from None
    dataset = loader(spec)
    validation_size = int(getattr(spec, "validation_size", 0) or 0)
    if validation_size and dataset.validation is None:
        hold_out_validation(dataset, validation_size, int(spec.seed))
    if getattr(spec, "ood_path", None) is not None:
        dataset.ood = disk.load_ood(spec, dataset, DATASETS[getattr(spec, "ood_format", "folder")])
    return dataset


def check_path(name: str, path: str | None, ood: bool = False) -> None:
    """Config-time validation (`disk`'s ``check``: sizes, labels, image signatures, a decoded sample),
    as training data or, with `ood`, as an OOD set (whose classes do not matter); raises ValueError."""
    loader = DATASETS[name]
    if isinstance(loader, disk.DiskFormat):
        loader.validate(path, ood)


__all__ = [
    "DATASETS",
    "DataLoader",
    "Dataset",
    "ImageSplit",
    "LazySplit",
    "SEPARATE_VALIDATION",
    "Split",
    "check_path",
    "derive_seed",
    "load_dataset",
    "make_generator",
]
