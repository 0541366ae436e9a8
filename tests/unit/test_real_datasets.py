"""Real-dataset loaders on miniature copies written in the official on-disk formats."""
from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tests.support import datasets as fx
from trainables.data import ImageSplit, LazySplit, disk, ham10000, load_dataset
from trainables.specs import DataSpec


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


def test_folder_unlabelled_and_classes(tmp_path):
    d = load_dataset(spec("folder", fx.write_folder(tmp_path / "a", count=10), image_size=16, test_size=3))
    assert d.class_names == ["unlabelled"] and (len(d.train), len(d.test)) == (8, 2)  # test: at most 20%
    assert set(d.train.labels.tolist()) == {0}
    d = load_dataset(spec("folder", fx.write_folder(tmp_path / "b", count=5, classes=2), image_size=16))
    assert d.class_names == ["kind0", "kind1"] and len(d.train) + len(d.test) == 10


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


ERRORS = [
    ("mnist", fx.write_mnist, "t10k-labels-idx1-ubyte.gz", _remove, r"mnist at .*: missing t10k-labels-idx1-ubyte \(or"),
    ("mnist", fx.write_mnist, "train-images-idx3-ubyte.gz",
     _write(gzip.compress((2049).to_bytes(4, "big") + bytes(12))),
     r"train-images-idx3-ubyte.gz: bad magic number 2049 \(expected 2051\)"),
    ("cifar10", fx.write_cifar10, "cifar-10-batches-bin/data_batch_3.bin", _remove,
     r"cifar10 at .*cifar-10-batches-bin: missing data_batch_3.bin"),
    ("cifar10", fx.write_cifar10, "cifar-10-batches-bin/test_batch.bin", _write(bytes(3072)),
     r"test_batch.bin: 3072 bytes is not a whole number of 3073-byte records"),
    ("cifar100", fx.write_cifar100, "cifar-100-binary/train.bin", _remove, r"cifar100 at .*: missing train.bin"),
    ("svhn", fx.write_svhn, "test_32x32.mat", _remove, r"svhn at .*: missing test_32x32.mat"),
    ("svhn", fx.write_svhn, "train_32x32.mat", _write(b"garbage" * 20), r"train_32x32.mat: not a MATLAB file"),
    ("imagefolder", fx.write_imagefolder, "val", lambda p: [f.unlink() for f in p.rglob("*.*")] and None, None),
    ("cub200", fx.write_cub, "attributes/image_attribute_labels.txt", _remove,
     r"CUB_200_2011 at .*: attributes/image_attribute_labels.txt not found"),
    ("cub200", fx.write_cub, "bounding_boxes.txt", _remove, r"CUB_200_2011 at .*: bounding_boxes.txt not found"),
    ("ham10000", fx.write_ham10000, "HAM10000_images_part_2", lambda p: [f.unlink() for f in p.iterdir()] and p.rmdir(),
     r"ham10000 at .*: HAM10000_images_part_2 not found"),
    ("ham10000", fx.write_ham10000, "HAM10000_metadata.csv", _write(b"lesion,image_id,dx\n"),
     r"HAM10000_metadata.csv: no column 'lesion_id'"),
]


@pytest.mark.parametrize("name,writer,target,damage,message", ERRORS, ids=[f"{e[0]}-{e[2]}" for e in ERRORS])
def test_config_time_errors_name_the_file(tmp_path, name, writer, target, damage, message):
    root = writer(tmp_path)
    damage(root / target)
    if message is None:  # detected at load time, not at config time
        with pytest.raises(ValueError, match=r"imagefolder at .*: val/ holds no image files"):
            load_dataset(spec(name, root))
        return
    with pytest.raises(ValidationError, match=message):
        spec(name, root)


def test_missing_image_found_at_load(tmp_path):
    root = fx.write_cub(tmp_path)
    next((root / "images").rglob("*.jpg")).unlink()
    with pytest.raises(ValueError, match=r"CUB_200_2011 at .*CUB_200_2011: image file images/00\d.Bird_\d/Bird_\d_\d.jpg not found"):
        load_dataset(spec("cub200", root))
    ham = fx.write_ham10000(tmp_path / "ham")
    (ham / "HAM10000_images_part_1" / "ISIC_0024306.jpg").unlink()
    with pytest.raises(ValueError, match=r"image ISIC_0024306.jpg not found in HAM10000_images_part_1 or"):
        load_dataset(spec("ham10000", ham))


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
