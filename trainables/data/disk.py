"""What every dataset read from disk shares: sub-sampling, memory placement, OOD sets, errors.

A format module provides ``check(path) -> root`` and ``read(root) -> Parts`` (labels, metadata and
the images as files or raw uint8 arrays); :class:`DiskFormat` turns those into a :class:`Dataset`.
``check`` runs before Ray on every ``lth sweep`` (``DataSpec``'s validation): it refuses data broken
inside, not just at its header, at a cost that stays small for real datasets (bench/data_check.py):
file sizes against their headers, every label (labels are small), and image files as
``imagecheck`` says (every file's signature, a seeded sample decoded). A format whose classes are
folders also says, for its use as training data only, that it holds at least two classes.

Sub-sampling: each split is shuffled by a generator derived from ``(spec.seed, "<name>/<split>")``
and its first ``train_size`` / ``test_size`` images are kept; a request larger than the split
shrinks to the whole split (as for ``digits``). A format without an official test split (``folder``)
first gives ``min(test_size, 20%)`` of a shuffled order to test and the rest to train.

Memory (``spec.in_memory``): True decodes every kept image into float32 tensors (ImageSplit);
False keeps files / raw pixels and decodes per batch (LazySplit); None (default) keeps a dataset in
memory when its float32 images (train + test, or the OOD set alone) take at most
``MEMORY_BUDGET`` bytes: CIFAR at 32 px fits, CUB / HAM10000 / ImageNet at 224 px do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from .splits import Dataset, LazySplit, Split, make_generator
from .decode import Item, float_bytes
from .describe import Describer, image_folders

MEMORY_BUDGET = 2 << 30  # one float32 copy per worker process; two workers fit in 8 GB
OOD_LABEL = -1  # an OOD image belongs to no in-distribution class: use its scores, never its accuracy
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def fail(dataset: str, root: Path, problem: str) -> ValueError:
    return ValueError(f"{dataset} at {root}: {problem}")


def relative(root: Path, file: str | Path) -> Path:
    """How a message names a file: relative to the dataset's root when inside it."""
    file = Path(file)
    return file.relative_to(root) if file.is_relative_to(root) else file


def require(dataset: str, root: Path, *names: str) -> None:
    """Raise naming the first required file or folder (relative to root) that is absent."""
    for name in names:
        if not (root / name).exists():
            raise fail(dataset, root, f"{name} not found")


@dataclass
class Source:
    """Images of one split with their annotations, before sub-sampling."""

    items: Sequence[Item]  # file paths (str) or a uint8 array (N, H, W[, C])
    labels: np.ndarray  # int64 (N,)
    concepts: np.ndarray | None = None  # bool (N, K)
    boxes: np.ndarray | None = None  # float (N, 4): x, y, w, h in original pixels

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> "Source":
        items = self.items[index] if isinstance(self.items, np.ndarray) else [self.items[i] for i in index]
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return Source(items, self.labels[index], pick(self.concepts), pick(self.boxes))


@dataclass
class Parts:
    train: Source
    test: Source | None  # None: no official test split; one is carved from train
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    concept_names: list[str] = field(default_factory=list)
    class_concepts: list[list[int]] | None = None  # None: no concepts per class

    @property
    def channels(self) -> int:
        return len(self.mean)


def shuffled(n: int, seed: int, key: str) -> np.ndarray:
    return torch.randperm(n, generator=make_generator(seed, key)).numpy()


def subsample(source: Source, size: int, seed: int, key: str) -> Source:
    return source.take(shuffled(len(source), seed, key)[: max(0, int(size))])


def carve(source: Source, test_size: int, seed: int, key: str) -> tuple[Source, Source]:
    order = shuffled(len(source), seed, key)
    n_test = max(1, min(int(test_size), len(source) // 5))
    return source.take(order[n_test:]), source.take(order[:n_test])


def keep_in_memory(spec: Any, sources: Sequence[Source], channels: int, size: int) -> bool:
    wanted = getattr(spec, "in_memory", None)
    if wanted is not None:
        return bool(wanted)
    return float_bytes(sum(len(s) for s in sources), channels, size) <= MEMORY_BUDGET


def make_split(source: Source, size: int, mean: tuple[float, ...], std: tuple[float, ...], in_memory: bool) -> Split:
    lazy = LazySplit(
        items=source.items,
        labels=torch.as_tensor(source.labels, dtype=torch.int64),
        size=size,
        channels=len(mean),
        mean=tuple(mean),
        std=tuple(std),
        concepts=None if source.concepts is None else torch.as_tensor(source.concepts, dtype=torch.bool),
        boxes=None if source.boxes is None else torch.as_tensor(source.boxes, dtype=torch.float32),
    )
    return lazy.subset(slice(None)) if in_memory else lazy


@dataclass(frozen=True)
class DiskFormat:
    """A registered dataset read from ``spec.path`` in an official on-disk format."""

    name: str
    check: Callable[[Path], Path]  # -> the dataset's root (e.g. the cifar-10-batches-bin folder)
    read: Callable[[Path], Parts]
    title: str = ""  # how errors name the dataset, when not by its registered name
    # Raises unless the root holds two classes or more; run for training data only, since an OOD
    # set's labels are never used (a folder of unlabelled images is one class).
    check_classes: Callable[[Path], None] | None = None
    describe: Describer = image_folders("")  # its facts, for dry runs (`describe.official` for a fixed dataset)
    validation_apart: ClassVar[bool] = False  # its validation split is held out of train

    def validate(self, path: str | Path | None, ood: bool = False) -> Path:
        if path is None:
            raise ValueError(f"dataset {self.name!r} is read from disk: set data.path to its folder")
        path = Path(path)
        if not path.is_dir():
            raise fail(self.name, path, "not a directory")
        root = self.check(path)
        if not ood and self.check_classes is not None:
            self.check_classes(root)
        return root

    def parts(self, path: str | Path | None, ood: bool = False) -> Parts:
        return self.read(self.validate(path, ood))

    def __call__(self, spec: Any) -> Dataset:
        parts = self.parts(spec.path)
        seed, size = int(spec.seed), int(spec.image_size)
        train, test = parts.train, parts.test
        if test is None:
            train, test = carve(train, spec.test_size, seed, f"{self.name}/carve")
        train = subsample(train, spec.train_size, seed, f"{self.name}/train")
        test = subsample(test, spec.test_size, seed, f"{self.name}/test")
        if not len(train) or not len(test):
            raise fail(self.name, Path(spec.path), f"no images in the {'train' if not len(train) else 'test'} split")
        for source in (train, test):
            _files_exist(self.title or self.name, Path(spec.path), source)
        in_memory = keep_in_memory(spec, [train, test], parts.channels, size)
        n = len(parts.class_names)
        return Dataset(
            name=self.name,
            train=make_split(train, size, parts.mean, parts.std, in_memory),
            test=make_split(test, size, parts.mean, parts.std, in_memory),
            ood=None,
            class_names=list(parts.class_names),
            concept_names=list(parts.concept_names),
            class_concepts=parts.class_concepts if parts.class_concepts is not None else [[] for _ in range(n)],
            mean=tuple(parts.mean),
            std=tuple(parts.std),
        )


def _files_exist(dataset: str, root: Path, source: Source) -> None:
    """Checked once at load, so that a file-backed split cannot fail halfway through training."""
    if not isinstance(source.items, np.ndarray):
        missing = next((Path(f) for f in source.items if not Path(f).is_file()), None)
        if missing is not None:
            raise fail(dataset, root, f"image file {relative(root, missing)} not found")


def load_ood(spec: Any, dataset: Dataset, loader: Any) -> Split | None:
    """The OOD set at ``spec.ood_path`` (its test split if it has one), shaped like ``dataset``.

    Images take the in-distribution size, channel count and normalisation; labels are OOD_LABEL.
    """
    if int(spec.ood_size) <= 0:
        return None
    if not isinstance(loader, DiskFormat):
        raise ValueError(f"data.ood_format {getattr(spec, 'ood_format', None)!r} is not a format read from disk")
    parts = loader.parts(spec.ood_path, ood=True)
    source = parts.test if parts.test is not None else parts.train
    source = subsample(source, spec.ood_size, int(spec.seed), f"{dataset.name}/ood")
    source = Source(source.items, np.full(len(source), OOD_LABEL, dtype=np.int64))
    _files_exist(loader.title or loader.name, Path(spec.ood_path), source)
    size, channels = dataset.image_size, dataset.in_channels
    in_memory = keep_in_memory(spec, [source], channels, size)
    return make_split(source, size, dataset.mean, dataset.std, in_memory)
