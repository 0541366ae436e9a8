"""Config-time check of a dataset's image files, cheap enough to run before every sweep.

The rule: every file (or, past ``HEADER_LIMIT`` files, a seeded sample of that many) is opened and
must start with the signature of an image format, so a missing, empty or garbage file is refused;
``DECODE_SAMPLE`` of those, a seeded sample, are decoded whole, so a file cut short is refused when
sampled. Decoding every image is what loading does, and takes minutes for ImageNet;
a bad file the sample misses fails at load instead, its error naming it (`decode.UndecodableImage`).
Costs (bench/data_check.py): reading a signature takes ~10 us a file from the page cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .decode import UndecodableImage, read_pixels
from .disk import fail, relative

HEADER_LIMIT = 100_000  # ~1 s: all of CIFAR, CUB, HAM10000, ImageNet's val; 8% of ImageNet's train
DECODE_SAMPLE = 64
DECODE_SIZE = 32  # JPEGs decode at a reduced scale, still reading the whole file
SEED = 0  # the same sample on every check of the same files

_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF, little / big endian, then BigTIFF
    b"MM\x00*",
    b"II+\x00",
    b"MM\x00+",
    *(b"P%d" % n for n in range(1, 8)),  # PBM, PGM, PPM, PAM
)


def _is_image_signature(head: bytes) -> bool:
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _pillow_identifies(file: Path) -> bool:
    """For a format the table above misses: Pillow reads the header only."""
    try:
        with Image.open(file):
            return True
    except Exception:  # any refusal means: not an image Pillow reads
        return False


def _sample(files: Sequence[str | Path], count: int) -> list[str | Path]:
    if len(files) <= count:
        return list(files)
    picked = np.random.default_rng(SEED).choice(len(files), size=count, replace=False)
    return [files[i] for i in np.sort(picked)]


def _head(file: str | Path) -> bytes:
    descriptor = os.open(file, os.O_RDONLY)  # a third faster than open(): this runs per file
    try:
        return os.read(descriptor, 12)
    finally:
        os.close(descriptor)


def check_signature(dataset: str, root: Path, file: str | Path) -> None:
    try:
        head = _head(file)
    except OSError as error:
        problem = "not found" if isinstance(error, FileNotFoundError) else f"cannot be read ({error.strerror})"
        raise fail(dataset, root, f"image file {relative(root, file)} {problem}") from None
    if not head:
        raise fail(dataset, root, f"image file {relative(root, file)} is empty (0 bytes)")
    if not _is_image_signature(head) and not _pillow_identifies(Path(file)):
        raise fail(dataset, root, f"image file {relative(root, file)} is not an image "
                   f"(it starts {head[:8].hex(' ')}, no image format's signature)")


def check_images(dataset: str, root: Path, files: Sequence[str | Path]) -> None:
    """Raises naming the first bad file found by the rule above."""
    checked = _sample(files, HEADER_LIMIT)
    for file in checked:
        check_signature(dataset, root, file)
    for file in _sample(checked, DECODE_SAMPLE):
        try:
            read_pixels(str(file), 3, DECODE_SIZE)
        except UndecodableImage as error:
            raise fail(dataset, root, f"image file {relative(root, file)} does not decode: {error.reason}") from None
