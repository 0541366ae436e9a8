"""SVHN (cropped digits) from the official ``train_32x32.mat`` / ``test_32x32.mat``.

Each file holds ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) with digits 1..10, where 10 means 0.
``extra_32x32.mat`` is not used. Normalisation: per-channel mean 0.4377, 0.4438, 0.4728 and
std 0.1980, 0.2010, 0.1970 of the training pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .disk import DiskFormat, Parts, Source, fail, require

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
MEAN, STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)


def check(path: Path) -> Path:
    for name in FILES.values():
        if not (path / name).is_file():
            raise fail("svhn", path, f"missing {name}")
        with open(path / name, "rb") as stream:
            if not stream.read(6) == b"MATLAB":
                raise fail("svhn", path, f"{name}: not a MATLAB file (bad header)")
    return path


def _split(root: Path, name: str) -> Source:
    from scipy.io import loadmat  # imported lazily: only SVHN needs scipy.io

    try:
        mat = loadmat(root / name, variable_names=["X", "y"])
    except Exception as error:  # scipy raises several unrelated types for a bad file
        raise fail("svhn", root, f"{name}: not a MATLAB file ({error})") from None
    images, labels = mat.get("X"), mat.get("y")
    if images is None or labels is None:
        raise fail("svhn", root, f"{name}: no 'X' and 'y' arrays")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise fail("svhn", root, f"{name}: 'X' is {images.dtype} {images.shape}, expected uint8 (32, 32, 3, N)")
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) != images.shape[3]:
        raise fail("svhn", root, f"{name}: {images.shape[3]} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 10):
        raise fail("svhn", root, f"{name}: labels outside 1..10")
    labels[labels == 10] = 0
    return Source(np.ascontiguousarray(images.transpose(3, 0, 1, 2)), labels)


def read(root: Path) -> Parts:
    require("svhn", root, *FILES.values())
    return Parts(_split(root, FILES["train"]), _split(root, FILES["test"]), [str(d) for d in range(10)], MEAN, STD)


FORMAT = DiskFormat("svhn", check, read)
