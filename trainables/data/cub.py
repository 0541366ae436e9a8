"""CUB-200-2011 with its 312 attributes as concepts and its bounding boxes as object masks.

``spec.path`` is the ``CUB_200_2011`` folder (or the folder holding it). Splits follow
``train_test_split.txt`` (1 = train). Per image, ``concepts[i, a]`` is the annotator's
``is_present`` for attribute ``a`` (``attributes/image_attribute_labels.txt``); ``concept_names``
come from ``attributes.txt`` (the official archive puts it beside ``CUB_200_2011``; inside it, or
under ``attributes/``, is accepted too). A class's true concepts are the attributes present in more
than ``CLASS_CONCEPT_THRESHOLD`` percent of its images according to
``attributes/class_attribute_labels_continuous.txt`` (a majority vote, as in Koh et al.'s concept
bottleneck models before their frequency filter). The mask is the bounding box mapped through the
same resize and centre crop as the image (a box, not a segmentation).
Normalisation: the ImageNet constants (CUB models are ImageNet-pretrained).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .disk import IMAGENET_MEAN, IMAGENET_STD, DiskFormat, Parts, Source, fail, require
from .describe import official
from .imagecheck import check_images

CLASS_CONCEPT_THRESHOLD = 50.0  # percent of a class's images with the attribute present
NAME = "CUB_200_2011"
FILES = (
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "classes.txt",
    "bounding_boxes.txt",
    "attributes/image_attribute_labels.txt",
    "attributes/class_attribute_labels_continuous.txt",
    "images",
)


def _attributes_file(root: Path) -> Path | None:
    for candidate in (root / "attributes" / "attributes.txt", root / "attributes.txt", root.parent / "attributes.txt"):
        if candidate.is_file():
            return candidate
    return None


def check(path: Path) -> Path:
    root = path / NAME if (path / NAME).is_dir() else path
    require(NAME, root, *FILES)
    if _attributes_file(root) is None:
        raise fail(NAME, root, "attributes/attributes.txt not found (nor attributes.txt inside or beside it)")
    check_images(NAME, root, _files(root, _table(root, "images.txt", ["id", "file"])))
    return root


def _files(root: Path, images: pd.DataFrame) -> list[str]:
    return [str(root / "images" / f) for f in images["file"]]


def _table(root: Path, name: str, columns: list[str]) -> pd.DataFrame:
    """Whitespace-separated text with exactly the given columns."""
    try:
        table = pd.read_csv(root / name, sep=r"\s+", header=None, names=columns)
    except (ValueError, pd.errors.ParserError) as error:
        raise fail(NAME, root, f"{name}: malformed ({error})") from None
    if table.isna().any().any():
        raise fail(NAME, root, f"{name}: malformed (missing fields in some lines)")
    return table


def _ints(root: Path, name: str, table: pd.DataFrame, columns: list[str]) -> list[np.ndarray]:
    try:
        return [table[c].to_numpy().astype(np.int64, casting="unsafe") for c in columns]
    except (TypeError, ValueError):
        raise fail(NAME, root, f"{name}: malformed (non-integer ids)") from None


def _names(root: Path, file: Path) -> list[str]:
    """'<id> <name>' lines, ids 1..n in order."""
    lines = [line.split(maxsplit=1) for line in file.read_text().splitlines() if line.strip()]
    if any(len(parts) != 2 or parts[0] != str(i + 1) for i, parts in enumerate(lines)):
        raise fail(NAME, root, f"{file.name}: malformed (expected lines '<id> <name>' numbered from 1)")
    return [parts[1].strip() for parts in lines]


def read(root: Path) -> Parts:
    images = _table(root, "images.txt", ["id", "file"])
    ids = images["id"].to_numpy()
    row = pd.Series(np.arange(len(ids)), index=ids)

    def by_image(name: str, columns: list[str]) -> pd.DataFrame:
        table = _table(root, name, ["id", *columns]).set_index("id")
        missing = set(ids) - set(table.index)
        if missing:
            raise fail(NAME, root, f"{name}: no line for image id {min(missing)}")
        return table.loc[ids]

    classes = _names(root, root / "classes.txt")
    attributes_file = _attributes_file(root)
    assert attributes_file is not None  # check() ran first
    concept_names = _names(root, attributes_file)
    (labels,) = _ints(root, "image_class_labels.txt", by_image("image_class_labels.txt", ["cls"]), ["cls"])
    labels = labels - 1
    if labels.min() < 0 or labels.max() >= len(classes):
        raise fail(NAME, root, f"image_class_labels.txt: class ids outside 1..{len(classes)}")
    (is_train,) = _ints(root, "train_test_split.txt", by_image("train_test_split.txt", ["train"]), ["train"])
    boxes = by_image("bounding_boxes.txt", ["x", "y", "w", "h"]).to_numpy(dtype=np.float32)

    name = "attributes/image_attribute_labels.txt"
    try:  # the official file has a few lines with an extra field: read only the first three
        image_id, attribute, present = np.loadtxt(root / name, dtype=np.int64, usecols=(0, 1, 2), ndmin=2).T
    except ValueError as error:
        raise fail(NAME, root, f"{name}: malformed ({error})") from None
    if not np.isin(image_id, ids).all() or attribute.min() < 1 or attribute.max() > len(concept_names):
        raise fail(NAME, root, f"{name}: image or attribute ids outside images.txt / attributes.txt")
    concepts = np.zeros((len(ids), len(concept_names)), dtype=bool)
    concepts[row.loc[image_id].to_numpy(), attribute - 1] = present == 1

    name = "attributes/class_attribute_labels_continuous.txt"
    try:
        continuous = np.loadtxt(root / name, dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise fail(NAME, root, f"{name}: malformed ({error})") from None
    if continuous.shape != (len(classes), len(concept_names)):
        raise fail(NAME, root, f"{name}: shape {continuous.shape}, expected ({len(classes)}, {len(concept_names)})")
    class_concepts = [np.flatnonzero(c > CLASS_CONCEPT_THRESHOLD).tolist() for c in continuous]

    source = Source(_files(root, images), labels, concepts, boxes)
    return Parts(
        source.take(np.flatnonzero(is_train == 1)),
        source.take(np.flatnonzero(is_train != 1)),
        classes,
        IMAGENET_MEAN,
        IMAGENET_STD,
        concept_names,
        class_concepts,
    )


FORMAT = DiskFormat("cub200", check, read, title=NAME, describe=official(3, 200, 5_994, 5_794))
