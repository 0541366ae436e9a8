"""Writers of miniature datasets in their official on-disk formats (file names, headers, byte layouts).

Array formats paint every image with its label so a test can check pairing and channel order:
channel 0 (red / grey) = ``label_value(label)``, green = 100, blue = 200. Each writer returns the
folder to give as ``data.path``.
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

GREEN, BLUE = 100, 200


def label_value(label: int) -> int:
    return 5 + 2 * int(label)


def _painted(labels: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 (N, size, size, channels) in the convention above."""
    images = np.empty((len(labels), size, size, channels), dtype=np.uint8)
    images[..., 0] = np.array([label_value(y) for y in labels], dtype=np.uint8)[:, None, None]
    if channels == 3:
        images[..., 1], images[..., 2] = GREEN, BLUE
    return images


def _labels(per_class: int, classes: int) -> np.ndarray:
    return np.tile(np.arange(classes), per_class).astype(np.uint8)


def write_mnist(root: Path, per_class: int = 3, gz: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", per_class), ("t10k", max(1, per_class - 1))):
        labels = _labels(n, 10)
        images = _painted(labels, 28, 1)[..., 0]
        header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in images.shape)
        files = {
            f"{prefix}-images-idx3-ubyte": header + images.tobytes(),
            f"{prefix}-labels-idx1-ubyte": (2049).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.tobytes(),
        }
        for name, data in files.items():
            (root / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return root


def _cifar_rows(labels: np.ndarray, coarse: bool) -> bytes:
    pixels = _painted(labels, 32, 3).transpose(0, 3, 1, 2).reshape(len(labels), -1)  # R, G, B planes
    label_bytes = [labels // 10, labels] if coarse else [labels]
    return np.concatenate([np.stack(label_bytes, 1).astype(np.uint8), pixels], axis=1).tobytes()


def _cifar_pickle(file: Path, labels: np.ndarray, key: bytes) -> None:
    data = _painted(labels, 32, 3).transpose(0, 3, 1, 2).reshape(len(labels), -1)
    batch = {b"batch_label": b"miniature", key: [int(y) for y in labels], b"data": data}
    file.write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar10(root: Path, per_class: int = 1, binary: bool = True) -> Path:
    folder = root / ("cifar-10-batches-bin" if binary else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"class{i}" for i in range(10)]
    batches = {f"data_batch_{i}": _labels(per_class, 10) for i in range(1, 6)} | {"test_batch": _labels(1, 10)}
    for name, labels in batches.items():
        if binary:
            (folder / f"{name}.bin").write_bytes(_cifar_rows(labels, coarse=False))
        else:
            _cifar_pickle(folder / name, labels, b"labels")
    if binary:
        (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    else:
        (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in names]}, protocol=2))
    return root


def write_cifar100(root: Path, per_class: int = 1, binary: bool = True) -> Path:
    folder = root / ("cifar-100-binary" if binary else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"fine{i}" for i in range(100)]
    for name, labels in (("train", _labels(per_class, 100)), ("test", _labels(1, 100))):
        if binary:
            (folder / f"{name}.bin").write_bytes(_cifar_rows(labels, coarse=True))
        else:
            _cifar_pickle(folder / name, labels, b"fine_labels")
    if binary:
        (folder / "fine_label_names.txt").write_text("\n".join(names) + "\n")
        (folder / "coarse_label_names.txt").write_text("\n".join(f"coarse{i}" for i in range(20)) + "\n")
    else:
        (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [n.encode() for n in names]}, protocol=2))
    return root


def write_svhn(root: Path, per_class: int = 2) -> Path:
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train_32x32.mat", per_class), ("test_32x32.mat", 1)):
        labels = _labels(n, 10)
        svhn_labels = np.where(labels == 0, 10, labels).astype(np.uint8)  # the official files say 10 for 0
        savemat(root / name, {"X": _painted(labels, 32, 3).transpose(1, 2, 3, 0), "y": svhn_labels[:, None]})
    return root


def _image(file: Path, size: tuple[int, int], colour: tuple[int, int, int], seed: int) -> None:
    """A width x height image: a flat colour with a little noise (so JPEG and resizing have content)."""
    width, height = size
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour)[None, None] + rng.integers(-20, 21, (height, width, 3)), 0, 255)
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(file)


def write_imagefolder(root: Path, classes: int = 3, per_class: int = 3, ext: str = "png") -> Path:
    for split, n in (("train", per_class), ("val", 2)):
        for c in range(classes):
            for i in range(n):
                _image(root / split / f"n0{c}" / f"{split}_{c}_{i}.{ext}", (24 + 4 * i, 20), (40 + 80 * c, 90, 30), i)
    return root


def write_folder(root: Path, count: int = 7, classes: int = 0) -> Path:
    """Unlabelled images, or ``classes`` class subfolders of ``count`` images each."""
    for c in range(max(1, classes)):
        folder = root / f"kind{c}" if classes else root
        for i in range(count):
            _image(folder / f"img{i}.jpg", (30, 26), (200, 50 + 20 * c, 120), 100 + i)
    return root


# CUB: images of IMAGE_SIZE with a box around the object; concept matrix chosen so the
# class-level majority is known: attribute a is present on image i iff (i + a) % 3 != 0.
CUB_CLASSES, CUB_ATTRIBUTES, CUB_PER_CLASS = 3, 6, 4
CUB_IMAGE_SIZE = (40, 30)  # width, height
CUB_BOX = (10.0, 5.0, 20.0, 15.0)  # x, y, width, height


def cub_present(image_id: int, attribute: int) -> bool:
    return (image_id + attribute) % 3 != 0


def write_cub(root: Path) -> Path:
    """root/CUB_200_2011 plus root/attributes.txt, where the official archive puts it. Returns the CUB folder."""
    cub = root / "CUB_200_2011"
    (cub / "attributes").mkdir(parents=True, exist_ok=True)
    classes = [f"{c + 1:03d}.Bird_{c}" for c in range(CUB_CLASSES)]
    images, labels, split, boxes, attrs = [], [], [], [], []
    image_id = 0
    for c, name in enumerate(classes):
        for i in range(CUB_PER_CLASS):
            image_id += 1
            rel = f"{name}/Bird_{c}_{i}.jpg"
            _image(cub / "images" / rel, CUB_IMAGE_SIZE, (60 * c, 120, 200), image_id)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c + 1}")
            split.append(f"{image_id} {int(i < CUB_PER_CLASS - 1)}")
            boxes.append(f"{image_id} " + " ".join(f"{v:.1f}" for v in CUB_BOX))
            for a in range(1, CUB_ATTRIBUTES + 1):
                attrs.append(f"{image_id} {a} {int(cub_present(image_id, a))} 3 12.5")
    attrs[1] += " 0"  # the official file has a few lines with an extra field
    continuous = [
        " ".join(f"{100.0 * np.mean([cub_present(c * CUB_PER_CLASS + i + 1, a) for i in range(CUB_PER_CLASS)]):.6f}"
                 for a in range(1, CUB_ATTRIBUTES + 1))
        for c in range(CUB_CLASSES)
    ]
    texts = {
        "images.txt": images,
        "image_class_labels.txt": labels,
        "train_test_split.txt": split,
        "bounding_boxes.txt": boxes,
        "classes.txt": [f"{c + 1} {name}" for c, name in enumerate(classes)],
        "attributes/image_attribute_labels.txt": attrs,
        "attributes/class_attribute_labels_continuous.txt": continuous,
    }
    for name, lines in texts.items():
        (cub / name).write_text("\n".join(lines) + "\n")
    (root / "attributes.txt").write_text("\n".join(f"{a} has_part::colour_{a}" for a in range(1, CUB_ATTRIBUTES + 1)) + "\n")
    return cub


HAM_DX = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def write_ham10000(root: Path, lesions: int = 24) -> Path:
    """Lesion k has 1 + k % 3 images, diagnosis HAM_DX[k % 7]; images alternate between the two parts."""
    rows = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    image = 24306
    for k in range(lesions):
        for _ in range(1 + k % 3):
            part = 1 + image % 2
            _image(root / f"HAM10000_images_part_{part}" / f"ISIC_{image:07d}.jpg", (32, 24), (180, 120, 100), image)
            rows.append(f"HAM_{k:07d},ISIC_{image:07d},{HAM_DX[k % 7]},histo,45.0,male,back")
            image += 1
    (root / "HAM10000_metadata.csv").write_text("\n".join(rows) + "\n")
    for part in (1, 2):
        (root / f"HAM10000_images_part_{part}").mkdir(exist_ok=True)
    return root
