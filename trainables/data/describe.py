"""What a dataset's images and splits look like, known without reading it: for dry runs and
compute estimates, which must work where the data is not.

Each dataset states its own facts where it is registered (`trainables/data/__init__.py`): a disk
format its channels, classes and official split sizes (`official`), a generated dataset its
channels and classes (`generated`). Images take the spec's `image_size` (every loader resizes to
it). Where a fact cannot be known without the files (the classes of an image folder, the exact
HAM10000 split), the description says it is assumed.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

IMAGENET_CLASSES = 1_000  #: what an image folder is assumed to hold before its class folders exist


@dataclass(frozen=True)
class Description:
    channels: int
    size: int
    classes: int
    train: int  # images a spec's training split will hold
    test: int
    assumed: tuple[str, ...] = ()  # which of the above are guesses

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


Describer = Callable[[Any], Description]


def official(channels: int, classes: int, train: int, test: int, assumed: tuple[str, ...] = ()) -> Describer:
    """A dataset with official splits: the spec's sizes, capped by them."""
    def describe(spec: Any) -> Description:
        return Description(channels, int(spec.image_size), classes, min(int(spec.train_size), train),
                           min(int(spec.test_size), test), assumed)
    return describe


def generated(channels: int, classes: int) -> Describer:
    """A generated dataset: as many images as the spec asks for."""
    def describe(spec: Any) -> Description:
        return Description(channels, int(spec.image_size), classes, int(spec.train_size), int(spec.test_size))
    return describe


def image_folders(under: str) -> Describer:
    """Folders of class folders (`under` the root: "train" for ImageNet-like layouts): the classes
    counted where the folder exists, else ImageNet's assumed; the split sizes assumed."""
    def describe(spec: Any) -> Description:
        classes = _class_folders(spec.path, under)
        assumed = ("split sizes",) if classes else ("split sizes", "classes")
        return Description(3, int(spec.image_size), classes or IMAGENET_CLASSES, int(spec.train_size), int(spec.test_size), assumed)
    return describe


def describe(spec: Any) -> Description:
    """The dataset a `DataSpec` names, from the spec alone (a folder's class names if it exists);
    `train` counts the images trained on, the validation split held out of train left out."""
    from lth_sweep.trainables.data import DATASETS

    description = DATASETS[spec.name].describe(spec)
    held_out = spec.held_out(description.train) if hasattr(spec, "held_out") else 0
    return replace(description, train=description.train - held_out) if held_out else description


def _class_folders(path: str | None, under: str) -> int:
    root = Path(path) / under if path else None
    if root is None or not root.is_dir():
        return 0
    return sum(1 for child in root.iterdir() if child.is_dir())


@dataclass(frozen=True)
class Generated:
    """A generated dataset as registered: its loader and its facts."""

    load: Callable[[Any], Any]
    describe: Describer
    validation_apart: bool = False  # generates its validation split apart: asking for one changes no training image

    def __call__(self, spec: Any):
        return self.load(spec)
