"""MNIST from its four official idx files (gzipped or not) in ``spec.path``.

idx: big-endian int32 magic (2051 images / 2049 labels), int32 dimensions, then uint8 data.
Checked before a sweep: headers, each body's size against its header, every label (0..9).
Normalisation: the customary mean 0.1307 / std 0.3081 of the training pixels.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .disk import DiskFormat, Parts, Source, fail
from .describe import official

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
MEAN, STD = (0.1307,), (0.3081,)


def _found(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise fail("mnist", root, f"missing {name} (or {name}.gz)")


def _open(file: Path):
    return gzip.open(file, "rb") if file.suffix == ".gz" else open(file, "rb")


def _header(root: Path, file: Path, magic: int) -> tuple[int, ...]:
    ndim = 3 if magic == IMAGES_MAGIC else 1
    try:
        with _open(file) as stream:
            head = stream.read(4 + 4 * ndim)
    except (OSError, EOFError, zlib.error) as error:
        raise fail("mnist", root, f"{file.name}: unreadable ({error})") from None
    if len(head) < 4 + 4 * ndim:
        raise fail("mnist", root, f"{file.name}: truncated header")
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        raise fail("mnist", root, f"{file.name}: bad magic number {found} (expected {magic})")
    return tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def _wrong_size(root: Path, file: Path, found: int, dims: tuple[int, ...]) -> ValueError:
    what = "images" if len(dims) == 3 else "labels"
    return fail("mnist", root, f"{file.name}: {found} bytes of {what}, its header says {int(np.prod(dims))} "
                f"({' x '.join(map(str, dims))})")


def _check_size(root: Path, file: Path, dims: tuple[int, ...]) -> None:
    """The body holds what the header says. A raw file: its size. A gzip file: its last 4 bytes, the
    uncompressed size mod 2**32 (ISIZE, RFC 1952), cost nothing, where decompressing MNIST's 10 MB
    of images would take ~0.3 s on every sweep. A file cut short ends in compressed data instead, matching by
    chance once in 2**32; on a mismatch the file is decompressed to say what is wrong (a multi-member
    file passes there). Damage inside a complete gzip file (its CRC) is found when it is read."""
    expected = 4 + 4 * len(dims) + int(np.prod(dims))
    if file.suffix != ".gz":
        size = file.stat().st_size
        if size != expected:
            raise _wrong_size(root, file, size - (4 + 4 * len(dims)), dims)
        return
    with open(file, "rb") as stream:
        stream.seek(-4, 2)
        isize = int.from_bytes(stream.read(4), "little")
    if isize != expected % 2**32:
        _read_idx(root, file, IMAGES_MAGIC if len(dims) == 3 else LABELS_MAGIC)


def check(path: Path) -> Path:
    for images_name, labels_name in FILES.values():
        images, labels = _found(path, images_name), _found(path, labels_name)
        dims = _header(path, images, IMAGES_MAGIC)
        (count,) = _header(path, labels, LABELS_MAGIC)
        if dims[0] != count:
            raise fail("mnist", path, f"{images.name} has {dims[0]} images but {labels.name} {count} labels")
        _check_size(path, images, dims)
        _labels(path, labels)  # 60,000 bytes: read whole
    return path


def _read_idx(root: Path, file: Path, magic: int) -> np.ndarray:
    dims = _header(root, file, magic)
    try:
        with _open(file) as stream:
            data = stream.read()[4 + 4 * len(dims) :]
    except EOFError:
        raise fail("mnist", root, f"{file.name}: truncated (the compressed data ends early)") from None
    except (OSError, zlib.error) as error:  # gzip.BadGzipFile (a CRC mismatch) is an OSError
        raise fail("mnist", root, f"{file.name}: unreadable ({error})") from None
    if len(data) != int(np.prod(dims)):
        raise _wrong_size(root, file, len(data), dims)
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _labels(root: Path, file: Path) -> np.ndarray:
    labels = _read_idx(root, file, LABELS_MAGIC)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise fail("mnist", root, f"{file.name}: label {labels[bad[0]]} (item {bad[0]}) is not a digit 0..9")
    return labels.astype(np.int64)


def _split(root: Path, split: str) -> Source:
    images_name, labels_name = FILES[split]
    images, labels = _found(root, images_name), _found(root, labels_name)
    return Source(_read_idx(root, images, IMAGES_MAGIC), _labels(root, labels))


def read(root: Path) -> Parts:
    return Parts(_split(root, "train"), _split(root, "test"), [str(d) for d in range(10)], MEAN, STD)


FORMAT = DiskFormat("mnist", check, read, describe=official(1, 10, 60_000, 10_000))
