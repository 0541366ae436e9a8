"""Raw pixels -> normalised float tensors, one code path for every real dataset.

An image is either a file (decoded with Pillow) or a uint8 array (H, W) / (H, W, C) already in
memory (MNIST, CIFAR, SVHN). Both go through :func:`prepare`: channel conversion, resize of the
shorter side to ``size`` (bilinear with antialiasing), centre crop, scale to [0, 1], normalise.
In-memory and file-backed splits call the same function, so they agree bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

Item = str | np.ndarray  # an image file, or raw uint8 pixels
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as Pillow's convert("L")


class UndecodableImage(ValueError):
    """An image file Pillow cannot decode; the message names the file, ``reason`` says why."""

    def __init__(self, file: str | Path, reason: str):
        super().__init__(f"cannot decode image {file}: {reason}")
        self.file, self.reason = str(file), reason


def _reason(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):  # Pillow's message repeats the file name
        return "cannot identify image file (no format Pillow reads)"
    return str(error) or type(error).__name__


def read_pixels(item: Item, channels: int, size: int) -> np.ndarray:
    """uint8 (H, W, channels). JPEGs are decoded at a reduced scale when that still covers ``size``."""
    if isinstance(item, np.ndarray):
        pixels = item if item.ndim == 3 else item[:, :, None]
        if pixels.shape[2] == channels:
            return pixels
        if channels == 1:
            return np.rint(pixels[:, :, :3].astype(np.float32) @ _LUMA).astype(np.uint8)[:, :, None]
        return np.repeat(pixels[:, :, :1], channels, axis=2)
    try:
        with Image.open(item) as image:
            image.draft("RGB" if channels == 3 else "L", (size, size))  # no-op for non-JPEG
            array = np.array(image.convert("RGB" if channels == 3 else "L"))  # writable, for torch
    except FileNotFoundError:
        raise ValueError(f"image file not found: {item}") from None
    except Exception as error:  # a bad file: OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise UndecodableImage(item, _reason(error)) from None
    return array if array.ndim == 3 else array[:, :, None]


def original_size(item: Item) -> tuple[int, int]:
    """(height, width) before any resizing; for files only the header is read."""
    if isinstance(item, np.ndarray):
        return int(item.shape[0]), int(item.shape[1])
    try:
        with Image.open(item) as image:
            width, height = image.size
    except FileNotFoundError:
        raise ValueError(f"image file not found: {item}") from None
    except Exception as error:  # as in read_pixels
        raise UndecodableImage(item, _reason(error)) from None
    return height, width


def _crop_geometry(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """Shorter side -> size, then the centred size x size window: (new_h, new_w, top, left)."""
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    return new_h, new_w, (new_h - size) // 2, (new_w - size) // 2


def resize_crop(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """float (N, C, H, W) in [0, 1] -> (N, C, size, size)."""
    height, width = pixels.shape[-2:]
    if height == width == size:
        return pixels
    new_h, new_w, top, left = _crop_geometry(height, width, size)
    resized = F.interpolate(pixels, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    return resized[..., top : top + size, left : left + size].clamp(0, 1)


def normalise(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((pixels - m) / s).contiguous()


def prepare(
    items: Sequence[Item], size: int, channels: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Decode, resize and normalise: float32 (N, channels, size, size).

    Items of equal shape are resized together (a stacked uint8 array is the fast path).
    """
    if isinstance(items, np.ndarray) and items.dtype == np.uint8 and len(items):
        raw = items if items.ndim == 4 else items[..., None]
        if raw.shape[3] != channels:
            raw = np.stack([read_pixels(x, channels, size) for x in raw])
        out = torch.empty(len(raw), channels, size, size)
        for start in range(0, len(raw), 1024):  # bounded float copies of the native-size pixels
            chunk = torch.from_numpy(np.ascontiguousarray(raw[start : start + 1024])).permute(0, 3, 1, 2)
            out[start : start + len(chunk)] = resize_crop(chunk.float() / 255.0, size)
        return normalise(out, mean, std)
    out = torch.empty(len(items), channels, size, size)
    for i, item in enumerate(items):
        pixels = torch.from_numpy(np.ascontiguousarray(read_pixels(item, channels, size))).permute(2, 0, 1)
        out[i] = resize_crop(pixels[None].float() / 255.0, size)[0]
    return normalise(out, mean, std)


def box_masks(boxes: torch.Tensor, sizes: Sequence[tuple[int, int]], size: int) -> torch.Tensor:
    """bool (N, size, size): output pixels whose centre falls inside the box.

    ``boxes`` are (x, y, width, height) in the original image's pixels, ``sizes`` its (height, width).
    """
    masks = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    grid = torch.arange(size, dtype=torch.float64) + 0.5
    for i, ((height, width), (x, y, w, h)) in enumerate(zip(sizes, boxes.tolist())):
        new_h, new_w, top, left = _crop_geometry(height, width, size)
        ys = (grid + top) * height / new_h  # output pixel centres in original coordinates
        xs = (grid + left) * width / new_w
        inside_y = (ys >= y) & (ys <= y + h)
        inside_x = (xs >= x) & (xs <= x + w)
        masks[i] = inside_y[:, None] & inside_x[None, :]
    return masks


def _is_image_entry(entry: os.DirEntry) -> bool:
    # DirEntry.is_file() uses the directory's own record: no stat per file (ImageNet: 1.3M files)
    return entry.name.lower().endswith(IMAGE_EXTENSIONS) and not entry.name.startswith(".") and entry.is_file()


def image_files(folder: Path) -> list[str]:
    """Paths of the image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    with os.scandir(folder) as entries:
        found = {entry.name: entry.path for entry in entries if _is_image_entry(entry)}
    return [found[name] for name in sorted(found)]


def holds_images(folder: Path) -> bool:
    """Whether ``folder`` holds an image file directly (stops at the first)."""
    with os.scandir(folder) as entries:
        return any(_is_image_entry(entry) for entry in entries)


def float_bytes(count: int, channels: int, size: int) -> int:
    return count * channels * size * size * 4


__all__ = [
    "IMAGE_EXTENSIONS", "Item", "UndecodableImage", "box_masks", "float_bytes", "holds_images", "image_files",
    "original_size", "prepare", "read_pixels",
]
