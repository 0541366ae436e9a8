"""Dataset tests on real generated tensors: the shapes dataset is the ground truth
the explanation metrics are scored against, so its guarantees are checked here."""

from types import SimpleNamespace

import pytest
import torch

from lth_sweep.trainables.data import DATASETS, Dataset, load_dataset
from lth_sweep.trainables.data import shapes as shapes_mod


def spec(**kw):
    base = dict(name="shapes", image_size=16, train_size=900, test_size=180, ood_size=90, seed=0, path=None)
    return SimpleNamespace(**{**base, **kw})


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_dataset(spec())


def splits(d):
    return [("train", d.train), ("test", d.test), ("ood", d.ood)]


def test_shapes_deterministic():
    a, b = load_dataset(spec(train_size=50, test_size=20, ood_size=10)), load_dataset(
        spec(train_size=50, test_size=20, ood_size=10)
    )
    for (_, x), (_, y) in zip(splits(a), splits(b)):
        for field in ("images", "labels", "concepts", "masks"):
            assert torch.equal(getattr(x, field), getattr(y, field))
    c = load_dataset(spec(train_size=50, test_size=20, ood_size=10, seed=1))
    assert not torch.equal(a.train.images, c.train.images)
    # splits are drawn from different derived seeds
    assert not torch.equal(a.train.images[:20], a.test.images)


def test_shapes_sizes_and_dtypes(ds):
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (9, 3, 16)
    assert ds.class_names[0] == "red circle" and len(set(ds.class_names)) == 9
    assert ds.concept_names == shapes_mod.CONCEPT_NAMES
    for name, n in [("train", 900), ("test", 180), ("ood", 90)]:
        s = getattr(ds, name)
        assert len(s) == n
        assert s.images.shape == (n, 3, 16, 16) and s.images.dtype == torch.float32
        assert s.labels.shape == (n,) and s.labels.dtype == torch.int64
        assert s.concepts.shape == (n, 11) and s.concepts.dtype == torch.bool
        assert s.masks.shape == (n, 16, 16) and s.masks.dtype == torch.bool
        assert torch.isfinite(s.images).all()
    assert ds.train.images.mean().abs() < 0.5 and 0.5 < ds.train.images.std() < 1.5
    counts = torch.bincount(ds.train.labels, minlength=9)
    assert counts.min() == counts.max() == 100


@pytest.mark.parametrize("size,n", [(8, 1), (24, 7)])
def test_shapes_other_sizes(size, n):
    d = load_dataset(spec(image_size=size, train_size=n, test_size=n, ood_size=n))
    assert d.train.images.shape == (n, 3, size, size) and d.image_size == size
    assert d.train.masks.flatten(1).any(1).all()


def test_concepts_match_labels(ds):
    for _, s in splits(ds)[:2]:
        for k, defining in enumerate(ds.class_concepts):
            c = s.concepts[s.labels == k]
            assert c[:, defining].all()
            others = [j for j in range(6) if j not in defining]
            assert not c[:, others].any()
        assert (s.concepts[:, 0:3].sum(1) == 1).all() and (s.concepts[:, 7:10].sum(1) == 1).all()


def test_masks_cover_the_coloured_object(ds):
    s = ds.train
    raw = s.images * shapes_mod.STD + shapes_mod.MEAN
    assert s.masks.flatten(1).any(1).all()
    for colour in range(3):
        sel = s.labels % 3 == colour
        img, m = raw[sel], s.masks[sel]
        own = img[:, colour]
        rest = (img.sum(1) - own) / 2  # mean of the other two channels
        # the object is saturated in its own channel, the background is greyish
        assert (own - rest)[m].mean() > 0.5
        assert (own - rest)[~m].abs().mean() < 0.15


def test_irrelevant_concepts_independent_of_label(ds):
    c, y = ds.train.concepts, ds.train.labels
    for k in range(9):
        ck = c[y == k]
        for j in range(6, 11):  # large, stripes, dots, noise, dark_background
            frac = ck[:, j].float().mean().item()
            assert 0.1 < frac < 0.9, (ds.class_names[k], ds.concept_names[j], frac)


def test_ood_split(ds):
    assert ds.ood is not None and len(ds.ood) == 90
    assert not ds.ood.concepts[:, 3:6].any()
    assert set(ds.ood.labels.tolist()) == {0, 3, 6}  # red class of each shape
    assert (ds.ood.concepts[:, 0:3].long().argmax(1) * 3 == ds.ood.labels).all()
    assert load_dataset(spec(ood_size=0)).ood is None


def test_digits():
    d = load_dataset(spec(name="digits", image_size=8, train_size=10_000, test_size=200))
    assert d.num_classes == 10 and d.class_names == [str(i) for i in range(10)]
    assert d.train.images.shape[1:] == (1, 8, 8) and d.in_channels == 1 and d.image_size == 8
    assert len(d.test) == 200 and len(d.train) == 1797 - 200
    assert d.ood is None and d.train.concepts is None and d.train.masks is None
    assert d.concept_names == [] and len(d.class_concepts) == 10
    assert set(d.train.labels.tolist()) == set(range(10))
    assert abs(d.train.images.mean()) < 0.2 and 0.8 < d.train.images.std() < 1.2
    again = load_dataset(spec(name="digits", image_size=8, train_size=10_000, test_size=200))
    assert torch.equal(d.train.images, again.train.images)
    big = load_dataset(spec(name="digits", image_size=16, train_size=100, test_size=50))
    assert big.train.images.shape == (100, 1, 16, 16) and len(big.test) == 50


def test_unknown_dataset():
    with pytest.raises(ValueError) as err:
        load_dataset(spec(name="imagenet"))
    for name in DATASETS:
        assert name in str(err.value)
