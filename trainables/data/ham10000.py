"""HAM10000 dermatoscopic images: ``HAM10000_metadata.csv`` + ``HAM10000_images_part_1/_2``.

The label is the diagnosis ``dx``, indexed in the fixed order of ``CLASSES``. There is no
official test split, and one lesion often has several images, so the split is by ``lesion_id``:
a lesion goes to test when the first byte of sha256(lesion_id) is below ``TEST_FRACTION`` x 256
(about 20% of lesions). It depends on nothing else (not the seed, not the file order), so every
run and every data seed shares one test set and no lesion is in both splits.
Normalisation: the per-channel statistics of HAM10000 commonly used for it (mean 0.7630, 0.5456,
0.5702; std 0.1409, 0.1523, 0.1692); no concepts, no masks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from .disk import DiskFormat, Parts, Source, fail, require
from .describe import official
from .imagecheck import check_images

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
TEST_FRACTION = 0.2
METADATA = "HAM10000_metadata.csv"
IMAGE_DIRS = ("HAM10000_images_part_1", "HAM10000_images_part_2")
MEAN, STD = (0.7630, 0.5456, 0.5702), (0.1409, 0.1523, 0.1692)


def in_test(lesion_id: str) -> bool:
    return hashlib.sha256(lesion_id.encode()).digest()[0] < TEST_FRACTION * 256


def check(path: Path) -> Path:
    require("ham10000", path, METADATA, *IMAGE_DIRS)
    header = (path / METADATA).open().readline().strip().split(",")
    missing = [c for c in ("lesion_id", "image_id", "dx") if c not in header]
    if missing:
        raise fail("ham10000", path, f"{METADATA}: no column {missing[0]!r} in its header")
    _, files = _index(path)
    check_images("ham10000", path, files)
    return path


def _index(root: Path) -> tuple[pd.DataFrame, list[str]]:
    """The metadata (lesion_id, image_id, dx) and each row's image file."""
    try:
        meta = pd.read_csv(root / METADATA, usecols=["lesion_id", "image_id", "dx"], dtype=str)
    except (ValueError, pd.errors.ParserError) as error:
        raise fail("ham10000", root, f"{METADATA}: malformed ({error})") from None
    if meta.isna().any().any():
        raise fail("ham10000", root, f"{METADATA}: empty lesion_id, image_id or dx in some rows")
    unknown = sorted(set(meta["dx"]) - set(CLASSES))
    if unknown:
        raise fail("ham10000", root, f"{METADATA}: unknown dx {unknown[0]!r} (known: {', '.join(CLASSES)})")
    found = {p.stem: p for d in IMAGE_DIRS for p in (root / d).iterdir() if p.suffix.lower() == ".jpg"}
    missing = [i for i in meta["image_id"] if i not in found]
    if missing:
        raise fail("ham10000", root, f"image {missing[0]}.jpg not found in {' or '.join(IMAGE_DIRS)}")
    return meta, [str(found[i]) for i in meta["image_id"]]


def read(root: Path) -> Parts:
    meta, files = _index(root)
    labels = meta["dx"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(dtype=np.int64)
    source = Source(files, labels)
    test = meta["lesion_id"].map(in_test).to_numpy(dtype=bool)
    return Parts(source.take(np.flatnonzero(~test)), source.take(np.flatnonzero(test)), list(CLASSES), MEAN, STD)


FORMAT = DiskFormat("ham10000", check, read, describe=official(3, 7, 8_012, 2_003, assumed=("split sizes",)))  # 10,015 images split ~80/20 by lesion
