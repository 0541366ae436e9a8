"""Folders of image files: ``imagefolder`` (ImageNet style) and ``folder`` (anything, for OOD).

imagefolder: ``train/<class>/<image>`` and ``val/<class>/<image>``; the classes are the sorted
names of train's subfolders, and every val subfolder must be one of them (ImageNet's flat val
folder has to be sorted into class folders first, as torchvision's ImageFolder also expects).

folder: either class subfolders (the classes, sorted) or image files directly inside (one class,
"unlabelled"); with subfolders, loose files at the top and subfolders without images are
ignored. It has no official test
split: see ``disk.carve``. As an OOD set it is used whole.

Only files directly inside a class folder count; extensions: ``decode.IMAGE_EXTENSIONS``.
Normalisation: the ImageNet constants (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .decode import image_files
from .disk import IMAGENET_MEAN, IMAGENET_STD, DiskFormat, Parts, Source, fail, require


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
        files += [str(f) for f in found]
        labels += [index[sub.name]] * len(found)
    return Source(files, np.asarray(labels, dtype=np.int64))


def check_imagefolder(path: Path) -> Path:
    require("imagefolder", path, "train", "val")
    if not _class_dirs(path / "train"):
        raise fail("imagefolder", path, "train/ has no class subfolders")
    return path


def read_imagefolder(root: Path) -> Parts:
    classes = [d.name for d in _class_dirs(root / "train")]
    train = _labelled(root / "train", classes, "imagefolder", root)
    test = _labelled(root / "val", classes, "imagefolder", root)
    for split, source in (("train", train), ("val", test)):
        if not len(source):
            raise fail("imagefolder", root, f"{split}/ holds no image files")
    return Parts(train, test, classes, IMAGENET_MEAN, IMAGENET_STD)


def check_folder(path: Path) -> Path:
    if not image_files(path) and not any(image_files(d) for d in _class_dirs(path)):
        raise fail("folder", path, "no image files in it or in its subfolders")
    return path


def read_folder(root: Path) -> Parts:
    classes = [d.name for d in _class_dirs(root) if image_files(d)]
    if classes:
        return Parts(Source(*_only(root, classes)), None, classes, IMAGENET_MEAN, IMAGENET_STD)
    files = [str(f) for f in image_files(root)]
    return Parts(Source(files, np.zeros(len(files), dtype=np.int64)), None, ["unlabelled"], IMAGENET_MEAN, IMAGENET_STD)


def _only(root: Path, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """Files of the subfolders that hold images (empty subfolders are skipped)."""
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = image_files(root / name)
        files += [str(f) for f in found]
        labels += [label] * len(found)
    return files, np.asarray(labels, dtype=np.int64)


IMAGEFOLDER = DiskFormat("imagefolder", check_imagefolder, read_imagefolder)
FOLDER = DiskFormat("folder", check_folder, read_folder)
