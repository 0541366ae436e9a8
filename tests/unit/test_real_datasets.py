"""Real-dataset loaders on miniature copies written in the official on-disk formats."""
from __future__ import annotations

import gzip
import os
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from tests.support import datasets as fx
from lth_sweep.trainables.data import ImageSplit, LazySplit, disk, ham10000, imagefolder, load_dataset
from lth_sweep.trainables.specs import DataSpec


def spec(name: str, path, **kw) -> DataSpec:
    return DataSpec(**{"name": name, "path": None if path is None else str(path), "image_size": 32, "train_size": 1000, "test_size": 1000, **kw})


def pixels(dataset, split) -> torch.Tensor:
    """Back to 0..255 values."""
    return torch.round(dataset.to_pixels(split.images) * 255)


def assert_painted(dataset, split) -> None:
    """Channel 0 carries the label, green/blue the fixed values: checks layout, order and pairing."""
    values = pixels(dataset, split)
    expected = torch.tensor([fx.label_value(y) for y in split.labels.tolist()], dtype=values.dtype)
    assert torch.equal(values[:, 0].amin((1, 2)), expected) and torch.equal(values[:, 0].amax((1, 2)), expected)
    if values.shape[1] == 3:
        assert (values[:, 1] == fx.GREEN).all() and (values[:, 2] == fx.BLUE).all()


@pytest.mark.parametrize("gz", [True, False])
def test_mnist(tmp_path, gz):
    d = load_dataset(spec("mnist", fx.write_mnist(tmp_path, gz=gz), image_size=28))
    assert (len(d.train), len(d.test), d.in_channels, d.image_size) == (30, 20, 1, 28)
    assert d.train.images.dtype == torch.float32 and d.train.labels.dtype == torch.int64
    assert sorted(d.train.labels.tolist()) == sorted(list(range(10)) * 3)
    assert d.mean == (0.1307,) and d.std == (0.3081,) and d.class_names[3] == "3"
    assert_painted(d, d.train)
    assert_painted(d, d.test)
    assert d.ood is None and d.train.concepts is None and d.train.masks is None


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar(tmp_path, name, classes, binary):
    writer = fx.write_cifar10 if name == "cifar10" else fx.write_cifar100
    d = load_dataset(spec(name, writer(tmp_path, binary=binary)))
    train_size = classes * (5 if name == "cifar10" else 1)
    assert (len(d.train), len(d.test), d.num_classes, d.in_channels) == (train_size, classes, classes, 3)
    assert d.train.images.shape == (train_size, 3, 32, 32)
    assert set(d.test.labels.tolist()) == set(range(classes))  # CIFAR-100: the fine label
    assert d.class_names[1] == ("class1" if name == "cifar10" else "fine1")
    assert len(d.mean) == 3 and d.mean[0] == pytest.approx(0.49 if name == "cifar10" else 0.507, abs=0.01)
    assert_painted(d, d.train)


def test_cifar_path_may_be_the_batches_folder(tmp_path):
    fx.write_cifar10(tmp_path)
    d = load_dataset(spec("cifar10", tmp_path / "cifar-10-batches-bin", train_size=7, test_size=3))
    assert (len(d.train), len(d.test)) == (7, 3)


class _Sneaky:
    def __reduce__(self):
        return (os.getcwd, ())  # harmless if it ran; it must not even be resolved


def test_cifar_python_refuses_other_globals(tmp_path):
    folder = fx.write_cifar10(tmp_path, binary=False) / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": _Sneaky(), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3: not a CIFAR python batch \(refusing to load .*getcwd"):
        load_dataset(spec("cifar10", tmp_path))


def test_svhn_label_10_is_0(tmp_path):
    d = load_dataset(spec("svhn", fx.write_svhn(tmp_path)))
    assert (len(d.train), len(d.test), d.num_classes) == (20, 10, 10)
    assert set(d.train.labels.tolist()) == set(range(10))
    assert_painted(d, d.train)  # label 0 is painted as 0: the stored 10 was mapped


def test_imagefolder_resize_and_crop(tmp_path):
    d = load_dataset(spec("imagefolder", fx.write_imagefolder(tmp_path), image_size=16))
    assert d.class_names == ["n00", "n01", "n02"] and (len(d.train), len(d.test)) == (9, 6)
    assert d.train.images.shape == (9, 3, 16, 16) and d.mean == disk.IMAGENET_MEAN
    red = pixels(d, d.test)[:, 0].mean((1, 2))
    expected = torch.tensor([40.0 + 80 * y for y in d.test.labels.tolist()])
    assert torch.allclose(red, expected, atol=6)  # the flat colour survives resizing (noise averages out)


def test_imagefolder_val_class_must_exist(tmp_path):
    fx.write_imagefolder(tmp_path)
    fx.write_folder(tmp_path / "val" / "n99", count=1)
    with pytest.raises(ValueError, match=r"imagefolder at .*: val/n99 is not a class of train/"):
        load_dataset(spec("imagefolder", tmp_path))


def test_folder_classes_and_unlabelled(tmp_path):
    d = load_dataset(spec("folder", fx.write_folder(tmp_path / "b", count=5, classes=2), image_size=16, test_size=3))
    assert d.class_names == ["kind0", "kind1"] and (len(d.train), len(d.test)) == (8, 2)  # test: at most 20%
    parts = imagefolder.FOLDER.parts(fx.write_folder(tmp_path / "a", count=10), ood=True)  # as an OOD set
    assert parts.class_names == ["unlabelled"] and set(parts.train.labels.tolist()) == {0} and parts.test is None


def test_cub_concepts_masks_and_split(tmp_path):
    d = load_dataset(spec("cub200", fx.write_cub(tmp_path), image_size=16))
    n_classes, per_class = fx.CUB_CLASSES, fx.CUB_PER_CLASS
    assert (len(d.train), len(d.test), d.num_classes) == (n_classes * (per_class - 1), n_classes, n_classes)
    assert d.concept_names == [f"has_part::colour_{a}" for a in range(1, fx.CUB_ATTRIBUTES + 1)]
    assert d.train.concepts.shape == (len(d.train), fx.CUB_ATTRIBUTES) and d.train.concepts.dtype == torch.bool
    # Class concepts: strictly more than 50% of the class's 4 images.
    for c, defining in enumerate(d.class_concepts):
        share = [np.mean([fx.cub_present(c * per_class + i + 1, a) for i in range(per_class)]) for a in range(1, 7)]
        assert defining == [a for a in range(6) if share[a] > 0.5]
    # The 40x30 image is resized to 21x16 and cropped at columns 2..17; the box x 10..30, y 5..20
    # covers the output pixels whose centres map inside it: rows 3..10, columns 3..13.
    assert d.test.masks.shape == (n_classes, 16, 16) and d.test.masks.dtype == torch.bool
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[3:11, 3:14] = True
    assert all(torch.equal(m, expected) for m in d.test.masks)


def test_cub_concepts_follow_image_ids(tmp_path):
    d = load_dataset(spec("cub200", fx.write_cub(tmp_path), image_size=16, in_memory=False))
    per_class = fx.CUB_PER_CLASS
    for split, offsets in ((d.test, [per_class]), (d.train, range(1, per_class))):
        for item, label, concepts in zip(split.items, split.labels.tolist(), split.concepts):
            i = int(item.rsplit("_", 1)[1].removesuffix(".jpg"))
            image_id = label * per_class + i + 1
            assert concepts.tolist() == [fx.cub_present(image_id, a) for a in range(1, fx.CUB_ATTRIBUTES + 1)]


def test_ham10000_split_by_lesion(tmp_path):
    import pandas as pd

    d = load_dataset(spec("ham10000", fx.write_ham10000(tmp_path), image_size=16, in_memory=False))
    assert d.class_names == fx.HAM_DX and d.mean == ham10000.MEAN and len(d.train) + len(d.test) == 48
    meta = pd.read_csv(tmp_path / "HAM10000_metadata.csv").set_index("image_id")
    lesions = {}
    for name in ("train", "test"):
        split = getattr(d, name)
        rows = meta.loc[[os.path.basename(f).removesuffix(".jpg") for f in split.items]]
        assert [fx.HAM_DX[y] for y in split.labels.tolist()] == rows.dx.tolist()
        lesions[name] = set(rows.lesion_id)
    assert lesions["train"] and lesions["test"] and not lesions["train"] & lesions["test"]
    assert all(ham10000.in_test(x) for x in lesions["test"]) and not any(ham10000.in_test(x) for x in lesions["train"])


def test_deterministic_subsampling(tmp_path):
    fx.write_cifar10(tmp_path, per_class=4)
    a = load_dataset(spec("cifar10", tmp_path, train_size=50, test_size=5))
    b = load_dataset(spec("cifar10", tmp_path, train_size=50, test_size=5))
    c = load_dataset(spec("cifar10", tmp_path, train_size=50, test_size=5, seed=1))
    assert (len(a.train), len(a.test)) == (50, 5)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.train.labels, b.train.labels)
    assert not torch.equal(a.train.labels, c.train.labels)
    whole = load_dataset(spec("cifar10", tmp_path, train_size=10_000, test_size=10_000))
    assert (len(whole.train), len(whole.test)) == (200, 10)  # oversized requests shrink to the split


@pytest.mark.parametrize("writer,name", [(fx.write_cub, "cub200"), (fx.write_cifar10, "cifar10")])
def test_lazy_split_matches_in_memory(tmp_path, writer, name):
    path = writer(tmp_path)
    memory = load_dataset(spec(name, path, image_size=24, in_memory=True))
    lazy = load_dataset(spec(name, path, image_size=24, in_memory=False))
    assert isinstance(memory.train, ImageSplit) and isinstance(lazy.train, LazySplit)
    assert lazy.in_channels == 3 and lazy.image_size == 24 and len(lazy.train) == len(memory.train)
    pick = torch.tensor([3, 0, 5])
    images, labels = lazy.train.batch(pick)
    expected_images, expected_labels = memory.train.batch(pick)
    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
    sub = lazy.train.subset(pick)
    assert isinstance(sub, ImageSplit) and torch.equal(sub.images, expected_images)
    for field in ("labels", "concepts", "masks"):
        ref = getattr(memory.train, field)
        assert (ref is None and getattr(lazy.train, field) is None) or torch.equal(getattr(lazy.train, field), ref)
        assert ref is None or torch.equal(getattr(sub, field), ref[pick])
    first, _ = lazy.test.batch(slice(0, 2))
    assert torch.equal(first, memory.test.images[:2])
    with pytest.raises(TypeError, match="batch"):
        lazy.train.images


def test_in_memory_decided_by_size(tmp_path, monkeypatch):
    fx.write_cifar10(tmp_path)
    assert isinstance(load_dataset(spec("cifar10", tmp_path)).train, ImageSplit)
    monkeypatch.setattr(disk, "MEMORY_BUDGET", 1000)
    assert isinstance(load_dataset(spec("cifar10", tmp_path)).train, LazySplit)


def test_ood_from_a_folder(tmp_path):
    fx.write_mnist(tmp_path / "mnist")
    fx.write_folder(tmp_path / "ood", count=6)
    d = load_dataset(spec("mnist", tmp_path / "mnist", image_size=16, ood_path=str(tmp_path / "ood"), ood_size=4))
    assert d.ood.images.shape == (4, 1, 16, 16) and (d.ood.labels == disk.OOD_LABEL).all()
    grey = 0.299 * 200 + 0.587 * 50 + 0.114 * 120  # the folder's colour in one channel, MNIST's normalisation
    assert d.to_pixels(d.ood.images).mean() * 255 == pytest.approx(grey, abs=3)
    cifar = fx.write_cifar10(tmp_path / "cifar")
    d = load_dataset(spec("shapes", None, image_size=16, train_size=9, test_size=9, ood_path=str(cifar),
                          ood_format="cifar10", ood_size=5))
    assert d.ood.images.shape == (5, 3, 16, 16) and d.mean == (0.5,) * 3
    assert load_dataset(spec("mnist", tmp_path / "mnist", ood_path=str(tmp_path / "ood"), ood_size=0)).ood is None


def _remove(path):
    path.unlink()


def _write(data: bytes):
    return lambda path: path.write_bytes(data)


def _cut(keep: float):
    """The file cut short, as by an interrupted download or copy."""
    return lambda path: path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def _drop_last(count: int):
    return lambda path: path.write_bytes(path.read_bytes()[:-count])


def _overwrite(changes: dict[int, bytes]):
    """Bytes at the given offsets replaced."""
    def damage(path):
        data = bytearray(path.read_bytes())
        for offset, value in changes.items():
            data[offset : offset + len(value)] = value
        path.write_bytes(bytes(data))
    return damage


def _poke(offset: int, value: int):
    return _overwrite({offset: bytes([value])})


def _gz_poke(offset: int, value: int):
    """One byte of a gzipped file's content changed (and the file re-zipped: a complete, valid gzip)."""
    def damage(path):
        data = bytearray(gzip.decompress(path.read_bytes()))
        data[offset] = value
        path.write_bytes(gzip.compress(bytes(data)))
    return damage


def _pickled_label(key: bytes, index: int, value: int):
    def damage(path):
        batch = pickle.loads(path.read_bytes())  # the test's own file
        batch[key][index] = value
        path.write_bytes(pickle.dumps(batch, protocol=2))
    return damage


def _svhn_label(index: int, value: int):
    def damage(path):
        from scipy.io import loadmat, savemat

        mat = loadmat(path)
        mat["y"][index, 0] = value
        savemat(path, {"X": mat["X"], "y": mat["y"]})
    return damage


def _nothing(path):
    pass


_mnist_raw = lambda root: fx.write_mnist(root, gz=False)  # noqa: E731
_cifar10_py = lambda root: fx.write_cifar10(root, binary=False)  # noqa: E731
_imagefolder_jpg = lambda root: fx.write_imagefolder(root, ext="jpg")  # noqa: E731
_one_class = lambda root: fx.write_imagefolder(root, classes=1)  # noqa: E731
_one_subfolder = lambda root: fx.write_folder(root, count=5, classes=1)  # noqa: E731

# id, dataset, writer, damaged file or folder (relative to the writer's root), damage, message
ERRORS = [
    ("mnist-missing", "mnist", fx.write_mnist, "t10k-labels-idx1-ubyte.gz", _remove,
     r"mnist at .*: missing t10k-labels-idx1-ubyte \(or"),
    ("mnist-bad-magic", "mnist", fx.write_mnist, "train-images-idx3-ubyte.gz",
     _write(gzip.compress((2049).to_bytes(4, "big") + bytes(12))),
     r"train-images-idx3-ubyte.gz: bad magic number 2049 \(expected 2051\)"),
    ("mnist-body-cut-short", "mnist", _mnist_raw, "train-images-idx3-ubyte", _drop_last(100),
     r"mnist at .*: train-images-idx3-ubyte: 23420 bytes of images, its header says 23520 \(30 x 28 x 28\)"),
    ("mnist-gz-truncated", "mnist", fx.write_mnist, "train-images-idx3-ubyte.gz", _cut(0.5),
     r"mnist at .*: train-images-idx3-ubyte.gz: truncated \(the compressed data ends early\)"),
    ("mnist-label-10", "mnist", fx.write_mnist, "t10k-labels-idx1-ubyte.gz", _gz_poke(8 + 3, 10),
     r"mnist at .*: t10k-labels-idx1-ubyte.gz: label 10 \(item 3\) is not a digit 0..9"),
    ("mnist-label-10-raw", "mnist", _mnist_raw, "train-labels-idx1-ubyte", _poke(8 + 29, 10),
     r"train-labels-idx1-ubyte: label 10 \(item 29\) is not a digit 0..9"),
    ("cifar10-missing", "cifar10", fx.write_cifar10, "cifar-10-batches-bin/data_batch_3.bin", _remove,
     r"cifar10 at .*cifar-10-batches-bin: missing data_batch_3.bin"),
    ("cifar10-partial-record", "cifar10", fx.write_cifar10, "cifar-10-batches-bin/test_batch.bin", _write(bytes(3072)),
     r"test_batch.bin: 3072 bytes is not a whole number of 3073-byte records"),
    ("cifar10-label-11", "cifar10", fx.write_cifar10, "cifar-10-batches-bin/data_batch_2.bin", _poke(4 * 3073, 11),
     r"cifar10 at .*: data_batch_2.bin: record 4 has label 11, outside 0..9"),
    ("cifar10-python-label-11", "cifar10", _cifar10_py, "cifar-10-batches-py/test_batch", _pickled_label(b"labels", 7, 11),
     r"cifar10 at .*: test_batch: record 7 has label 11, outside 0..9"),
    ("cifar10-python-truncated", "cifar10", _cifar10_py, "cifar-10-batches-py/data_batch_1", _cut(0.5),
     r"cifar10 at .*: data_batch_1: not a CIFAR python batch"),
    ("cifar100-missing", "cifar100", fx.write_cifar100, "cifar-100-binary/train.bin", _remove,
     r"cifar100 at .*: missing train.bin"),
    ("cifar100-fine-label-100", "cifar100", fx.write_cifar100, "cifar-100-binary/test.bin", _poke(5 * 3074 + 1, 100),
     r"cifar100 at .*: test.bin: record 5 has label 100, outside 0..99"),
    ("svhn-missing", "svhn", fx.write_svhn, "test_32x32.mat", _remove, r"svhn at .*: missing test_32x32.mat"),
    ("svhn-not-matlab", "svhn", fx.write_svhn, "train_32x32.mat", _write(b"garbage" * 20),
     r"train_32x32.mat: not a MATLAB file"),
    ("svhn-label-11", "svhn", fx.write_svhn, "test_32x32.mat", _svhn_label(2, 11),
     r"svhn at .*: test_32x32.mat: label 11 \(item 2\) is outside 0..10"),
    ("imagefolder-val-empty", "imagefolder", fx.write_imagefolder, "val",
     lambda p: [f.unlink() for f in p.rglob("*.*")] and None, r"imagefolder at .*: val/ holds no image files"),
    ("imagefolder-one-class", "imagefolder", _one_class, "train", _nothing,
     r"imagefolder at .*: train/ holds images of one class only \(n00\): fewer than two classes cannot be classified"),
    ("imagefolder-garbage-jpg", "imagefolder", _imagefolder_jpg, "train/n01/train_1_0.jpg", _write(b"garbage" * 10),
     r"imagefolder at .*: image file train/n01/train_1_0.jpg is not an image \(it starts 67 61 72 62"),
    ("imagefolder-empty-png", "imagefolder", fx.write_imagefolder, "val/n02/val_2_1.png", _write(b""),
     r"imagefolder at .*: image file val/n02/val_2_1.png is empty \(0 bytes\)"),
    ("imagefolder-jpg-cut-short", "imagefolder", _imagefolder_jpg, "train/n00/train_0_2.jpg", _cut(0.6),
     r"imagefolder at .*: image file train/n00/train_0_2.jpg does not decode: .*[Tt]runcated"),
    ("folder-loose-images", "folder", fx.write_folder, ".", _nothing,
     r"folder at .*: its images are not sorted into class subfolders: one class cannot be classified"),
    ("folder-one-subfolder", "folder", _one_subfolder, ".", _nothing,
     r"folder at .*: images of one class only \(kind0\): fewer than two classes cannot be classified"),
    ("cub-missing-attributes", "cub200", fx.write_cub, "attributes/image_attribute_labels.txt", _remove,
     r"CUB_200_2011 at .*: attributes/image_attribute_labels.txt not found"),
    ("cub-missing-boxes", "cub200", fx.write_cub, "bounding_boxes.txt", _remove,
     r"CUB_200_2011 at .*: bounding_boxes.txt not found"),
    ("cub-garbage-jpg", "cub200", fx.write_cub, "images/002.Bird_1/Bird_1_2.jpg", _write(bytes(50)),
     r"CUB_200_2011 at .*: image file images/002.Bird_1/Bird_1_2.jpg is not an image"),
    ("ham10000-missing-part", "ham10000", fx.write_ham10000, "HAM10000_images_part_2",
     lambda p: [f.unlink() for f in p.iterdir()] and p.rmdir(), r"ham10000 at .*: HAM10000_images_part_2 not found"),
    ("ham10000-bad-header", "ham10000", fx.write_ham10000, "HAM10000_metadata.csv", _write(b"lesion,image_id,dx\n"),
     r"HAM10000_metadata.csv: no column 'lesion_id'"),
    ("ham10000-jpg-cut-short", "ham10000", fx.write_ham10000, "HAM10000_images_part_1/ISIC_0024306.jpg", _cut(0.6),
     r"ham10000 at .*: image file HAM10000_images_part_1/ISIC_0024306.jpg does not decode"),
]


@pytest.mark.parametrize("name,writer,target,damage,message", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_config_time_errors_name_the_file(tmp_path, name, writer, target, damage, message):
    """What `lth sweep` checks before Ray (the data spec's validation): one message naming the
    dataset, the file and the problem."""
    root = writer(tmp_path)
    damage(root / target)
    with pytest.raises(ValidationError, match=message) as error:
        spec(name, root)
    assert error.value.error_count() == 1


def test_one_class_folder_is_fine_as_an_ood_set(tmp_path):
    """An OOD set's labels are never used: unlabelled images (one class) are what it usually is."""
    folder = str(fx.write_folder(tmp_path / "ood", count=6))
    assert DataSpec(ood_path=folder).ood_path == folder
    d = load_dataset(spec("imagefolder", fx.write_imagefolder(tmp_path / "data"), image_size=16, ood_path=folder, ood_size=3))
    assert len(d.ood) == 3


def test_images_past_the_decoded_sample_fail_at_load_naming_the_file(tmp_path, monkeypatch):
    """The check decodes a seeded sample: a file cut short outside it passes, and load names it."""
    from lth_sweep.trainables.data import imagecheck

    monkeypatch.setattr(imagecheck, "DECODE_SAMPLE", 0)
    root = fx.write_imagefolder(tmp_path, ext="jpg")
    bad = root / "train" / "n01" / "train_1_2.jpg"
    _cut(0.6)(bad)
    d = load_dataset(spec("imagefolder", root, image_size=16, in_memory=False))
    index = d.train.items.index(str(bad))
    with pytest.raises(ValueError, match=rf"cannot decode image {re.escape(str(bad))}: .*[Tt]runcated") as error:
        d.train.batch([index])
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_image_check_samples_past_its_limit(tmp_path, monkeypatch):
    """Past HEADER_LIMIT files, a seeded sample of that many: bounded cost, the same files each time."""
    from lth_sweep.trainables.data import imagecheck

    seen: list[list[str]] = []
    monkeypatch.setattr(imagecheck, "HEADER_LIMIT", 4)
    monkeypatch.setattr(imagecheck, "check_signature", lambda dataset, root, file: seen[-1].append(file))
    root = fx.write_folder(tmp_path, count=5, classes=2)
    for _ in range(2):
        seen.append([])
        spec("folder", root)
    assert len(seen[0]) == 4 and len(set(seen[0])) == 4 and seen[0] == seen[1]


def _bmp_claiming(width: int, height: int):
    """A BMP whose header claims width x height pixels: Pillow refuses it as a decompression bomb."""
    return _overwrite({18: width.to_bytes(4, "little"), 22: height.to_bytes(4, "little")})


@pytest.mark.parametrize("ext,damage,reason", [
    ("jpg", _cut(0.6), "[Tt]runcated"),
    ("bmp", _bmp_claiming(100_000, 100_000), "could be decompression bomb"),
    ("ppm", _overwrite({3: b"2\x0f"}), "invalid literal for int"),
    ("png", _write(b"garbage"), "cannot identify image file"),
], ids=["truncated-jpg", "bmp-bomb", "ppm-bad-header", "garbage-png"])
def test_undecodable_images_name_the_file(tmp_path, ext, damage, reason):
    """Whatever Pillow raises (OSError, ValueError, DecompressionBombError, SyntaxError), decoding
    says which file, once, without Pillow's traceback."""
    from lth_sweep.trainables.data.decode import prepare

    file = tmp_path / f"image.{ext}"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (26, 30, 3), dtype=np.uint8)).save(file)
    damage(file)
    with pytest.raises(ValueError, match=rf"cannot decode image {re.escape(str(file))}: .*{reason}") as error:
        prepare([str(file)], 16, 3, (0.5,) * 3, (0.5,) * 3)
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_missing_image_is_named(tmp_path):
    root = fx.write_cub(tmp_path)
    next((root / "images").rglob("*.jpg")).unlink()
    with pytest.raises(ValidationError, match=r"CUB_200_2011 at .*CUB_200_2011: image file images/00\d.Bird_\d/Bird_\d_\d.jpg not found"):
        spec("cub200", root)
    ham = fx.write_ham10000(tmp_path / "ham")
    (ham / "HAM10000_images_part_1" / "ISIC_0024306.jpg").unlink()
    with pytest.raises(ValidationError, match=r"image ISIC_0024306.jpg not found in HAM10000_images_part_1 or"):
        spec("ham10000", ham)


def test_spec_validation(tmp_path):
    with pytest.raises(ValidationError, match="dataset 'cub200' is read from disk: set data.path"):
        DataSpec(name="cub200")
    with pytest.raises(ValidationError, match="'shapes' is not a dataset format read from disk"):
        DataSpec(ood_path=str(tmp_path), ood_format="shapes")
    with pytest.raises(ValidationError, match=r"ood_path: folder at .*: no image files"):
        DataSpec(ood_path=str(tmp_path))
    assert DataSpec().in_memory is None and DataSpec().ood_format == "folder"


def test_image_split_batch_and_subset():
    split = ImageSplit(torch.arange(12.0).view(3, 1, 2, 2), torch.tensor([0, 1, 2]), masks=torch.ones(3, 2, 2, dtype=torch.bool))
    images, labels = split.batch(torch.tensor([2, 0]))
    assert labels.tolist() == [2, 0] and images[0, 0, 0, 0] == 8
    sub = split.subset([1])
    assert len(sub) == 1 and sub.masks.shape == (1, 2, 2) and sub.concepts is None and sub.image_shape == (1, 2, 2)


SWEEP = (
    "data: {{name: {name}, path: '{path}', image_size: 16, train_size: 20, test_size: 6, ood_size: 0}}\n"
    "train: {{epochs: 1}}\npruning: {{rounds: 1}}\nseeds: 0\n"
)

# id, dataset, writer, damaged file or folder, damage, exit code, what stderr says
CLI_CASES = [
    ("one-class-imagefolder", "imagefolder", _one_class, "train", _nothing, 2,
     "train/ holds images of one class only (n00): fewer than two classes cannot be classified"),
    ("truncated-mnist-gz", "mnist", fx.write_mnist, "train-images-idx3-ubyte.gz", _cut(0.5), 2,
     "train-images-idx3-ubyte.gz: truncated (the compressed data ends early)"),
    ("garbage-jpg", "imagefolder", _imagefolder_jpg, "val/n01/val_1_1.jpg", _write(b"garbage"), 2,
     "image file val/n01/val_1_1.jpg is not an image"),
    ("healthy-imagefolder", "imagefolder", fx.write_imagefolder, "train", _nothing, 99, "RAY STARTED"),
    ("healthy-mnist", "mnist", fx.write_mnist, "train-images-idx3-ubyte.gz", _nothing, 99, "RAY STARTED"),
]


@pytest.mark.parametrize("name,writer,target,damage,code,message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_lth_sweep_refuses_broken_data_before_ray(tmp_path, name, writer, target, damage, code, message):
    """`lth sweep` itself: exit 2 and one line naming the dataset, the file and the problem, no
    traceback, nothing written; the healthy twins pass every check and reach Ray (stubbed: exit 99)."""
    from tests.support.lth_cli import run_lth

    work, store = tmp_path / "work", tmp_path / "store" / "mlflow.db"
    work.mkdir()
    store.parent.mkdir()
    root = writer(tmp_path / "data")
    damage(root / target)
    (work / "sweep.yaml").write_text(SWEEP.format(name=name, path=root))
    outcome = run_lth(["sweep", "sweep.yaml"], work, env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"})
    output = outcome.stderr + outcome.stdout
    assert outcome.code == code and message in outcome.stderr, output[-2000:]
    if code == 2:
        assert not outcome.traceback and "RAY STARTED" not in output, output[-2000:]
        line = next(line for line in outcome.stderr.splitlines() if message in line)
        assert f"{name} at {root}" in line, line
        assert outcome.left == ["sweep.yaml"] and not store.exists()
