"""SVHN (cropped digits) from the official ``train_32x32.mat`` / ``test_32x32.mat``.

Each file holds ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) with digits 1..10, where 10 means 0.
``extra_32x32.mat`` is not used. Normalisation: per-channel mean 0.4377, 0.4438, 0.4728 and
std 0.1980, 0.2010, 0.1970 of the training pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .disk import DiskFormat, Parts, Source, fail, require
from .describe import official

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
MEAN, STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)


def check(path: Path) -> Path:
    """Headers, the shape of ``X`` and every label: scipy reads ``y`` and seeks past ``X`` (~1 ms)."""
    from scipy.io import loadmat, whosmat

    for name in FILES.values():
        if not (path / name).is_file():
            raise fail("svhn", path, f"missing {name}")
        with open(path / name, "rb") as stream:
            if not stream.read(6) == b"MATLAB":
                raise fail("svhn", path, f"{name}: not a MATLAB file (bad header)")
        try:
            arrays = {var: (shape, kind) for var, shape, kind in whosmat(path / name)}
            labels = loadmat(path / name, variable_names=["y"]).get("y")
        except Exception as error:  # scipy raises several unrelated types for a bad file
            raise fail("svhn", path, f"{name}: not a MATLAB file ({error})") from None
        if "X" not in arrays or labels is None:
            raise fail("svhn", path, f"{name}: no 'X' and 'y' arrays (is the file cut short?)")
        _check_images(path, name, *arrays["X"])
        _check_labels(path, name, labels, arrays["X"][0][3])
    return path


def _check_images(root: Path, name: str, shape: tuple[int, ...], kind: str) -> None:
    if kind != "uint8" or len(shape) != 4 or tuple(shape[:3]) != (32, 32, 3):
        raise fail("svhn", root, f"{name}: 'X' is {kind} {tuple(shape)}, expected uint8 (32, 32, 3, N)")


def _check_labels(root: Path, name: str, y: np.ndarray, count: int) -> np.ndarray:
    labels = y.reshape(-1).astype(np.int64)
    if len(labels) != count:
        raise fail("svhn", root, f"{name}: {count} images but {len(labels)} labels")
    bad = np.flatnonzero((labels < 0) | (labels > 10))
    if bad.size:
        i = int(bad[0])
        raise fail("svhn", root, f"{name}: label {labels[i]} (item {i}) is outside 0..10 (10 stands for the digit 0)")
    return labels


def _split(root: Path, name: str) -> Source:
    from scipy.io import loadmat  # imported lazily: only SVHN needs scipy.io

    try:
        mat = loadmat(root / name, variable_names=["X", "y"])
    except Exception as error:  # scipy raises several unrelated types for a bad file
        raise fail("svhn", root, f"{name}: not a MATLAB file ({error})") from None
    images, labels = mat.get("X"), mat.get("y")
    if images is None or labels is None:
        raise fail("svhn", root, f"{name}: no 'X' and 'y' arrays")
    _check_images(root, name, images.shape, str(images.dtype))
    labels = _check_labels(root, name, labels, images.shape[3])
    labels[labels == 10] = 0
    return Source(np.ascontiguousarray(images.transpose(3, 0, 1, 2)), labels)


def read(root: Path) -> Parts:
    require("svhn", root, *FILES.values())
    return Parts(_split(root, FILES["train"]), _split(root, FILES["test"]), [str(d) for d in range(10)], MEAN, STD)


FORMAT = DiskFormat("svhn", check, read, describe=official(3, 10, 73_257, 26_032))
