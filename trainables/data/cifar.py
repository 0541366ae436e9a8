"""CIFAR-10 / CIFAR-100 from the official binary version, or the python version read safely.

``spec.path`` is the extracted folder (``cifar-10-batches-bin``, ``cifar-100-binary``,
``cifar-10-batches-py``, ``cifar-100-python``) or the folder that contains it; the binary version
wins when both are present.

Binary records: label byte(s) (CIFAR-100: coarse, fine; the fine label is used) then 3072 pixel
bytes, the 1024 red, 1024 green and 1024 blue values of a 32 x 32 image in row-major order.

The python version is pickled, and the project never unpickles untrusted files with the stock
unpickler: these are read with an unpickler that resolves only the globals numpy arrays are
rebuilt from (``_reconstruct``, ``ndarray``, ``dtype``, ``_codecs.encode``) and refuses any
other, so a tampered file cannot run code; the result must then be uint8 pixels and integer labels.
Many people already hold this version (torchvision downloads it), hence the support.

Normalisation: per-channel mean/std of the training pixels (CIFAR-10: 0.4914, 0.4822, 0.4465 /
0.2470, 0.2435, 0.2616; CIFAR-100: 0.5071, 0.4865, 0.4409 / 0.2673, 0.2564, 0.2762).
"""

from __future__ import annotations

import _codecs
import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .disk import DiskFormat, Parts, Source, fail
from .describe import official

PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class Layout:
    name: str
    bin_dir: str
    bin_train: tuple[str, ...]
    bin_test: str
    bin_names: str  # text file of class names, one a line
    label_bytes: int
    py_dir: str
    py_train: tuple[str, ...]
    py_test: str
    py_meta: str
    py_labels: str
    py_names: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR10_LAYOUT = Layout(
    name="cifar10",
    bin_dir="cifar-10-batches-bin",
    bin_train=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    bin_test="test_batch.bin",
    bin_names="batches.meta.txt",
    label_bytes=1,
    py_dir="cifar-10-batches-py",
    py_train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    py_test="test_batch",
    py_meta="batches.meta",
    py_labels="labels",
    py_names="label_names",
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)
CIFAR100_LAYOUT = Layout(
    name="cifar100",
    bin_dir="cifar-100-binary",
    bin_train=("train.bin",),
    bin_test="test.bin",
    bin_names="fine_label_names.txt",
    label_bytes=2,
    py_dir="cifar-100-python",
    py_train=("train",),
    py_test="test",
    py_meta="meta",
    py_labels="fine_labels",
    py_names="fine_label_names",
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)


def _root(layout: Layout, path: Path) -> tuple[Path, bool]:
    """(folder holding the batches, is_binary)."""
    for folder, binary in ((path / layout.bin_dir, True), (path, True), (path / layout.py_dir, False), (path, False)):
        names = (layout.bin_test, *layout.bin_train) if binary else (layout.py_test, *layout.py_train)
        if folder.is_dir() and any((folder / n).is_file() for n in names):
            return folder, binary
    raise fail(
        layout.name,
        path,
        f"neither the binary version ({layout.bin_dir}/{layout.bin_test}) nor the python version "
        f"({layout.py_dir}/{layout.py_test}) found",
    )


def check(layout: Layout, path: Path) -> Path:
    """Every batch: the binary version's records whole and their labels in range (the label bytes
    are read through a memory map); the python version unpickled whole (the only way to its labels)."""
    root, binary = _root(layout, path)
    names = (*layout.bin_train, layout.bin_test) if binary else (*layout.py_train, layout.py_test)
    for name in names:
        if not (root / name).is_file():
            raise fail(layout.name, root, f"missing {name}")
        if binary:
            record = _record(layout, root, name)
            rows = np.memmap(root / name, dtype=np.uint8, mode="r").reshape(-1, record)
            _check_labels(layout, root, name, rows[:, layout.label_bytes - 1])
        else:
            _python_batch(layout, root, name)
    return root


def _record(layout: Layout, root: Path, name: str) -> int:
    """The record size, once the file is known to hold whole records."""
    size, record = (root / name).stat().st_size, layout.label_bytes + PIXELS
    if size == 0 or size % record:
        raise fail(layout.name, root, f"{name}: {size} bytes is not a whole number of {record}-byte records")
    return record


def _read_binary(layout: Layout, root: Path, name: str) -> Source:
    rows = np.fromfile(root / name, dtype=np.uint8).reshape(-1, _record(layout, root, name))
    labels = _check_labels(layout, root, name, rows[:, layout.label_bytes - 1])
    images = rows[:, layout.label_bytes :].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Source(np.ascontiguousarray(images), labels)


def _check_labels(layout: Layout, root: Path, name: str, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= layout.num_classes))
    if bad.size:
        i = int(bad[0])
        raise fail(layout.name, root, f"{name}: record {i} has label {labels[i]}, outside 0..{layout.num_classes - 1}")
    return labels


# Only what numpy arrays, bytes and str are rebuilt from; everything else is refused.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs.encode,
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _unpickle(layout: Layout, root: Path, name: str) -> dict[str, object]:
    try:
        with open(root / name, "rb") as stream:
            loaded = _ArraysOnly(stream, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise fail(layout.name, root, f"{name}: not a CIFAR python batch ({error})") from None
    if not isinstance(loaded, dict):
        raise fail(layout.name, root, f"{name}: not a CIFAR python batch (no dictionary)")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in loaded.items()}


def _python_batch(layout: Layout, root: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 pixels (N, 3072), int64 labels (N,)), checked."""
    batch = _unpickle(layout, root, name)
    data, labels = batch.get("data"), batch.get(layout.py_labels)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        raise fail(layout.name, root, f"{name}: 'data' is not a uint8 array of shape (N, {PIXELS})")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise fail(layout.name, root, f"{name}: {layout.py_labels!r} is not a list of integers") from None
    if len(labels) != len(data):
        raise fail(layout.name, root, f"{name}: {len(data)} images but {len(labels)} labels")
    return data, _check_labels(layout, root, name, labels)


def _read_python(layout: Layout, root: Path, name: str) -> Source:
    data, labels = _python_batch(layout, root, name)
    return Source(np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels)


def _class_names(layout: Layout, root: Path, binary: bool) -> list[str]:
    names: list[str] = []
    if binary and (root / layout.bin_names).is_file():
        names = [line.strip() for line in (root / layout.bin_names).read_text().splitlines() if line.strip()]
    elif not binary and (root / layout.py_meta).is_file():
        found = _unpickle(layout, root, layout.py_meta).get(layout.py_names)
        if isinstance(found, list):
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in found]
    return names if len(names) == layout.num_classes else [str(i) for i in range(layout.num_classes)]


def read(layout: Layout, root: Path) -> Parts:
    binary = (root / layout.bin_test).is_file()
    reader = _read_binary if binary else _read_python
    train_names = layout.bin_train if binary else layout.py_train
    parts = [reader(layout, root, name) for name in train_names]
    train = Source(np.concatenate([p.items for p in parts]), np.concatenate([p.labels for p in parts]))
    test = reader(layout, root, layout.bin_test if binary else layout.py_test)
    return Parts(train, test, _class_names(layout, root, binary), layout.mean, layout.std)


CIFAR10 = DiskFormat("cifar10", partial(check, CIFAR10_LAYOUT), partial(read, CIFAR10_LAYOUT), describe=official(3, 10, 50_000, 10_000))
CIFAR100 = DiskFormat("cifar100", partial(check, CIFAR100_LAYOUT), partial(read, CIFAR100_LAYOUT), describe=official(3, 100, 50_000, 10_000))
