"""Folders of image files: ``imagefolder`` (ImageNet style) and ``folder`` (anything, for OOD).

imagefolder: ``train/<class>/<image>`` and ``val/<class>/<image>``; the classes are the sorted
names of train's subfolders, and every val subfolder must be one of them (ImageNet's flat val
folder has to be sorted into class folders first, as torchvision's ImageFolder also expects).

folder: either class subfolders (the classes, sorted) or image files directly inside (one class,
"unlabelled"); with subfolders, loose files at the top and subfolders without images are
ignored. It has no official test split: see ``disk.carve``. As an OOD set it is used whole.

As training data, both need images of two classes or more (one class cannot be classified: every
accuracy would be 1.0); as an OOD set, any images do. Config-time checks: see ``imagecheck``.

Only files directly inside a class folder count; extensions: ``decode.IMAGE_EXTENSIONS``.
Normalisation: the ImageNet constants (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .decode import holds_images, image_files
from .disk import IMAGENET_MEAN, IMAGENET_STD, DiskFormat, Parts, Source, fail, require
from .describe import image_folders
from .imagecheck import check_images

CANNOT_CLASSIFY = "fewer than two classes cannot be classified"


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _labelled(folder: Path, classes: list[str], dataset: str, root: Path) -> Source:
    index = {name: i for i, name in enumerate(classes)}
    files: list[str] = []
    labels: list[int] = []
    for sub in _class_dirs(folder):
        if sub.name not in index:
            raise fail(dataset, root, f"{sub.relative_to(root)} is not a class of train/")
        found = image_files(sub)
        files += found
        labels += [index[sub.name]] * len(found)
    return Source(files, np.asarray(labels, dtype=np.int64))


def _splits(root: Path) -> tuple[list[str], Source, Source]:
    classes = [d.name for d in _class_dirs(root / "train")]
    if not classes:
        raise fail("imagefolder", root, "train/ has no class subfolders")
    train = _labelled(root / "train", classes, "imagefolder", root)
    test = _labelled(root / "val", classes, "imagefolder", root)
    for split, source in (("train", train), ("val", test)):
        if not len(source):
            raise fail("imagefolder", root, f"{split}/ holds no image files")
    return classes, train, test


def check_imagefolder(path: Path) -> Path:
    require("imagefolder", path, "train", "val")
    _, train, test = _splits(path)
    check_images("imagefolder", path, [*train.items, *test.items])
    return path


def two_classes_imagefolder(root: Path) -> None:
    held = [d.name for d in _class_dirs(root / "train") if holds_images(d)]
    if len(held) < 2:
        raise fail("imagefolder", root, f"train/ holds images of one class only ({', '.join(held)}): {CANNOT_CLASSIFY}")


def read_imagefolder(root: Path) -> Parts:
    classes, train, test = _splits(root)
    return Parts(train, test, classes, IMAGENET_MEAN, IMAGENET_STD)


def _folder_source(root: Path) -> tuple[Source, list[str]]:
    """The images of the class subfolders that hold any (the classes), else those directly inside."""
    classes = [d.name for d in _class_dirs(root) if holds_images(d)]
    if not classes:
        files = image_files(root)
        return Source(files, np.zeros(len(files), dtype=np.int64)), ["unlabelled"]
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = image_files(root / name)
        files += found
        labels += [label] * len(found)
    return Source(files, np.asarray(labels, dtype=np.int64)), classes


def check_folder(path: Path) -> Path:
    source, _ = _folder_source(path)
    if not len(source):
        raise fail("folder", path, "no image files in it or in its subfolders")
    check_images("folder", path, source.items)
    return path


def two_classes_folder(root: Path) -> None:
    held = [d.name for d in _class_dirs(root) if holds_images(d)]
    if not held:
        raise fail("folder", root, "its images are not sorted into class subfolders: one class cannot be classified "
                   "(as training data, a folder holds a subfolder of images per class)")
    if len(held) < 2:
        raise fail("folder", root, f"images of one class only ({held[0]}): {CANNOT_CLASSIFY}")


def read_folder(root: Path) -> Parts:
    source, classes = _folder_source(root)
    return Parts(source, None, classes, IMAGENET_MEAN, IMAGENET_STD)


IMAGEFOLDER = DiskFormat(
    "imagefolder", check_imagefolder, read_imagefolder, check_classes=two_classes_imagefolder, describe=image_folders("train")
)
FOLDER = DiskFormat("folder", check_folder, read_folder, check_classes=two_classes_folder, describe=image_folders(""))
