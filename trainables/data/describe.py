"""What a dataset's images and splits look like, known without reading it: for dry runs and
compute estimates, which must work where the data is not.

Real datasets have fixed channels, classes and official split sizes; images take the spec's
`image_size` (every loader resizes to it). Where a fact cannot be known without the files (the
classes of an image folder, the exact HAM10000 split), the description says it is assumed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# name -> (channels, classes, official train images, official test images)
OFFICIAL = {
    "mnist": (1, 10, 60_000, 10_000),
    "cifar10": (3, 10, 50_000, 10_000),
    "cifar100": (3, 100, 50_000, 10_000),
    "svhn": (3, 10, 73_257, 26_032),
    "cub200": (3, 200, 5_994, 5_794),
    "ham10000": (3, 7, 8_012, 2_003),  # 10,015 images split ~80/20 by lesion (see ham10000.py)
}
DIGITS = 1_797
SHAPES_CLASSES = 9
CLUTTER_CLASSES = 35
IMAGENET_CLASSES = 1_000


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


def describe(spec: Any) -> Description:
    """The dataset a `DataSpec` names, from the spec alone (a folder's class names if it exists);
    `train` counts the images trained on, the validation split held out of train left out."""
    description = _describe(spec)
    held_out = spec.held_out(description.train) if hasattr(spec, "held_out") else 0
    return replace(description, train=description.train - held_out) if held_out else description


def _describe(spec: Any) -> Description:
    name, size = spec.name, int(spec.image_size)
    train, test = int(spec.train_size), int(spec.test_size)
    if name in OFFICIAL:
        channels, classes, n_train, n_test = OFFICIAL[name]
        assumed = ("split sizes",) if name == "ham10000" else ()
        return Description(channels, size, classes, min(train, n_train), min(test, n_test), assumed)
    if name == "shapes":
        return Description(3, size, SHAPES_CLASSES, train, test)
    if name == "clutter":
        return Description(3, size, CLUTTER_CLASSES, train, test)
    if name == "digits":
        n_test = max(1, min(test, DIGITS // 5))
        return Description(1, size, 10, max(1, min(train, DIGITS - n_test)), n_test)
    classes = _class_folders(spec.path, "train" if name == "imagefolder" else "")  # image folders: ImageNet-like
    assumed = ("split sizes",) if classes else ("split sizes", "classes")
    return Description(3, size, classes or IMAGENET_CLASSES, train, test, assumed)


def _class_folders(path: str | None, under: str) -> int:
    root = Path(path) / under if path else None
    if root is None or not root.is_dir():
        return 0
    return sum(1 for child in root.iterdir() if child.is_dir())
