"""MNIST from its four official idx files (gzipped or not) in ``spec.path``.

idx: big-endian int32 magic (2051 images / 2049 labels), int32 dimensions, then uint8 data.
Normalisation: the customary mean 0.1307 / std 0.3081 of the training pixels.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .disk import DiskFormat, Parts, Source, fail

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
MEAN, STD = (0.1307,), (0.3081,)


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _open(file: Path):
    return gzip.open(file, "rb") if file.suffix == ".gz" else open(file, "rb")


def _header(root: Path, file: Path, magic: int) -> tuple[int, ...]:
    ndim = 3 if magic == IMAGES_MAGIC else 1
    try:
        with _open(file) as stream:
            head = stream.read(4 + 4 * ndim)
    except (OSError, EOFError) as error:
        raise fail("mnist", root, f"{file.name}: unreadable ({error})") from None
    if len(head) < 4 + 4 * ndim:
        raise fail("mnist", root, f"{file.name}: truncated header")
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        raise fail("mnist", root, f"{file.name}: bad magic number {found} (expected {magic})")
    return tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def check(path: Path) -> Path:
    for images, labels in FILES.values():
        for name, magic in ((images, IMAGES_MAGIC), (labels, LABELS_MAGIC)):
            file = _find(path, name)
            if file is None:
                raise fail("mnist", path, f"missing {name} (or {name}.gz)")
            _header(path, file, magic)
    return path


def _read_idx(root: Path, name: str, magic: int) -> np.ndarray:
    file = _find(root, name)
    assert file is not None  # check() ran first
    dims = _header(root, file, magic)
    with _open(file) as stream:
        data = stream.read()[4 + 4 * len(dims) :]
    expected = int(np.prod(dims))
    if len(data) != expected:
        raise fail("mnist", root, f"{file.name}: {len(data)} data bytes, header says {expected}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _split(root: Path, split: str) -> Source:
    images_name, labels_name = FILES[split]
    images = _read_idx(root, images_name, IMAGES_MAGIC)
    labels = _read_idx(root, labels_name, LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise fail("mnist", root, f"{images_name} has {len(images)} images but {labels_name} {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise fail("mnist", root, f"{labels_name}: label {labels.max()} is not a digit")
    return Source(images, labels)


def read(root: Path) -> Parts:
    return Parts(_split(root, "train"), _split(root, "test"), [str(d) for d in range(10)], MEAN, STD)


FORMAT = DiskFormat("mnist", check, read)
