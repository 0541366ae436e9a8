"""What the config-time data check costs on a CIFAR-10-sized dataset (issue 29, item 9).

    python bench/data_check.py [--dir DIR] [--repeat N]

Writes CIFAR-10's 50,000 + 10,000 images of 32 x 32 pixels three ways into DIR (default: a
temporary folder, removed afterwards; a DIR already holding them is reused): the binary version
(cifar-10-batches-bin), the python version (cifar-10-batches-py) and an ImageNet-style folder of
PNGs (train/<class>/, val/<class>/). Times `trainables.data.check_path`, which every `lth sweep`
runs before Ray for each dataset of its grid, in a process that did not write them: the first
call (the files are in the page cache, having just been written or read: a cold disk is slower)
and the median of N more; then the image folder's check in parts (listing, signatures, decoding).
"""
from __future__ import annotations

import argparse
import multiprocessing
import pickle
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lth_sweep.trainables.data import check_path, imagecheck, imagefolder

TRAIN, TEST, CLASSES = 50_000, 10_000, 10


def _images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (count, 3072) in CIFAR's layout (red, green, blue planes) and labels 0..9."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 3072), dtype=np.uint8), rng.integers(0, CLASSES, count, dtype=np.uint8)


def _batches() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    batches = {f"data_batch_{i}": _images(TRAIN // 5, i) for i in range(1, 6)}
    return batches | {"test_batch": _images(TEST, 0)}


def write_binary(root: Path) -> Path:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, (data, labels) in _batches().items():
        (folder / f"{name}.bin").write_bytes(np.concatenate([labels[:, None], data], axis=1).tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(f"class{i}" for i in range(CLASSES)) + "\n")
    return root


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2's str (BINSTRING), as the official files (cPickle, protocol 2) hold
    them; Python 3's protocol 2 writes `_codecs.encode(text, "latin1")`, about 6x slower to load."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj: bytes) -> None:
        self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def write_python(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, (data, labels) in _batches().items():
        batch = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": data}
        with open(folder / name, "wb") as stream:
            _Python2Pickler(stream, protocol=2).dump(batch)
    return root


def write_pngs(root: Path) -> Path:
    for split in ("train", "val"):
        for c in range(CLASSES):
            (root / split / f"class{c}").mkdir(parents=True)
    count = 0
    for name, (data, labels) in _batches().items():
        split = "val" if name == "test_batch" else "train"
        for image, label in zip(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels):
            Image.fromarray(image).save(root / split / f"class{label}" / f"{count:05d}.png")
            count += 1
    return root


def write_all(root: Path) -> None:
    for name, write in {"binary": write_binary, "python": write_python, "pngs": write_pngs}.items():
        if not (root / name).exists():
            seconds = timed(lambda: write(root / name))
            print(f"wrote {root / name} in {seconds:.1f} s", flush=True)


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def report(label: str, call, repeat: int) -> None:
    first = timed(call)
    median = statistics.median(timed(call) for _ in range(repeat))
    print(f"{label:44} {first:8.3f} {median:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where the datasets are written (and kept); default: a temporary folder")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="data_check_"))
    try:
        # Written by another process: this one's allocator then starts as fresh as `lth sweep`'s
        # (after freeing large arrays, glibc serves the next ones without page faults, 10x faster).
        writer = multiprocessing.get_context("spawn").Process(target=write_all, args=(root,))
        writer.start()
        writer.join()
        check = {name: lambda name=name, kind=kind: check_path(kind, str(root / name))
                 for name, kind in (("binary", "cifar10"), ("python", "cifar10"), ("pngs", "imagefolder"))}
        print(f"{'config-time check (seconds)':44} {'first':>8} {'median':>8}")
        report("cifar10, binary version (60,000 records)", check["binary"], args.repeat)
        report("cifar10, python version (6 pickles)", check["python"], args.repeat)
        report("imagefolder, 60,000 PNGs", check["pngs"], args.repeat)
        pngs = root / "pngs"
        _, train, val = imagefolder._splits(pngs)
        files = [*train.items, *val.items]
        sample = imagecheck._sample(files, imagecheck.DECODE_SAMPLE)
        report("  of which: listing train/ and val/", lambda: imagefolder._splits(pngs), args.repeat)
        report("  of which: every file's signature", lambda: [imagecheck.check_signature("-", pngs, f) for f in files],
               args.repeat)
        report(f"  of which: decoding {len(sample)} files", lambda: imagecheck.check_images("-", pngs, sample), args.repeat)
    finally:
        if args.dir is None:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
