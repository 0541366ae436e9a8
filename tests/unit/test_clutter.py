"""The harder built-in dataset, `clutter`: its ground truth (the target's visible pixels, the
concepts that define its class) is what explanations are scored against, so it is checked here on
real generated tensors, as `shapes` is in test_data."""

import math
from types import SimpleNamespace

import pytest
import torch

from lth_sweep.trainables.data import clutter, load_dataset
from lth_sweep.trainables.data.describe import describe


def spec(**kw):
    base = dict(name="clutter", image_size=32, train_size=700, test_size=175, ood_size=70, seed=0, path=None)
    return SimpleNamespace(**{**base, **kw})


@pytest.fixture(scope="module")
def ds():
    return load_dataset(spec())


def pixels(split):
    return split.images * clutter.STD + clutter.MEAN


def test_sizes_classes_and_balance(ds):
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (35, 3, 32)
    assert ds.class_names[:6] == ["red circle", "green circle", "blue circle", "purple circle", "orange circle", "red square"]
    assert ds.class_names[-1] == "orange star"
    assert ds.concept_names == clutter.CONCEPT_NAMES and len(ds.concept_names) == 7 + 5 + 1 + 3 + 1 + 1
    for split, n in [(ds.train, 700), (ds.test, 175), (ds.ood, 70)]:
        assert split.images.shape == (n, 3, 32, 32) and split.images.dtype == torch.float32
        assert split.concepts.shape == (n, 18) and split.masks.shape == (n, 32, 32)
        assert torch.isfinite(split.images).all() and split.masks.flatten(1).any(1).all()
    assert torch.bincount(ds.train.labels, minlength=35).tolist() == [20] * 35
    assert describe(spec()).classes == 35


def test_deterministic_and_independent_of_chunking(monkeypatch):
    small = dict(train_size=60, test_size=10, ood_size=10)
    first, again = load_dataset(spec(**small)), load_dataset(spec(**small))
    monkeypatch.setattr(clutter, "_CHUNK", 7)
    chunked = load_dataset(spec(**small))
    for other in (again, chunked):
        for field in ("images", "labels", "concepts", "masks"):
            assert torch.equal(getattr(first.train, field), getattr(other.train, field)), field
    assert not torch.equal(first.train.images, load_dataset(spec(**small, seed=1)).train.images)


def test_concepts_define_the_classes(ds):
    shapes, colours = len(clutter.SHAPES), len(clutter.COLOURS)
    for split in (ds.train, ds.test):
        for label, defining in enumerate(ds.class_concepts):
            c = split.concepts[split.labels == label]
            assert c[:, defining].all()
            assert c[:, : shapes + colours].sum(1).eq(2).all()
        textures = split.concepts[:, shapes + colours + 1 : shapes + colours + 4]
        assert textures.sum(1).eq(1).all()
    # the nuisances are drawn apart from the class: every class has both values of each
    for label in range(35):
        c = ds.train.concepts[ds.train.labels == label]
        for j in range(shapes + colours, len(ds.concept_names)):  # large, textures, dark, occluded
            share = c[:, j].float().mean().item()
            assert 0.0 < share < 1.0, (ds.class_names[label], ds.concept_names[j], share)


def test_masks_are_the_visible_target(ds):
    split, colours = ds.train, len(clutter.COLOURS)
    image = pixels(split)
    target = clutter.RGB[split.labels % colours]
    distance = (image - target[:, :, None, None]).abs().mean(1)  # (n, H, W) from the class colour
    inside = torch.stack([d[m].mean() for d, m in zip(distance, split.masks)])
    outside = torch.stack([d[~m].mean() for d, m in zip(distance, split.masks)])
    assert (inside < outside).float().mean() > 0.98
    assert inside.mean() < 0.12 and outside.mean() > 0.3
    # the largest object: an unoccluded target covers more than any distractor can
    area = split.masks.flatten(1).sum(1).float()
    whole = ~split.concepts[:, -1]
    largest_distractor = math.pi * (clutter.DISTRACTOR_RADIUS[1] * 32) ** 2
    assert (area[whole] > largest_distractor).all()
    # the occluder hides part of the target, never most of it
    large = split.concepts[:, len(clutter.SHAPES) + colours]
    for size in (large, ~large):
        assert area[size & ~whole].mean() < 0.9 * area[size & whole].mean()
    assert (area[~whole] > 0.25 * math.pi * (clutter.TARGET_RADIUS[0] * 32) ** 2).all()


def test_ood_is_a_held_out_colour(ds):
    shapes, colours = len(clutter.SHAPES), len(clutter.COLOURS)
    assert not ds.ood.concepts[:, shapes : shapes + colours].any()
    assert set(ds.ood.labels.tolist()) == set(range(0, 35, 5))  # the red class of each shape
    assert (ds.ood.concepts[:, :shapes].long().argmax(1) * colours == ds.ood.labels).all()


def test_too_small_images_are_refused():
    with pytest.raises(ValueError, match="clutter needs image_size >= 16"):
        load_dataset(spec(image_size=12))


def test_validation_is_generated_apart():
    with_validation = load_dataset(spec(train_size=40, test_size=10, ood_size=0, validation_size=30))
    without = load_dataset(spec(train_size=40, test_size=10, ood_size=0))
    assert len(with_validation.validation) == 30 and without.validation is None
    assert torch.equal(with_validation.train.images, without.train.images)


@pytest.mark.parametrize("name", sorted(clutter.ALL_SHAPES))
def test_every_shape_has_the_circle_s_area_and_stays_inside_its_bound(name):
    cover, bound = clutter.ALL_SHAPES[name]
    grid = (torch.arange(400, dtype=torch.float64) - 199.5) / 20  # 0.05 px cells
    u, v = grid[None, :], grid[:, None]
    for radius in (4.0, 7.5):
        inside = cover(u, v, torch.tensor(radius, dtype=torch.float64))
        area = inside.sum().item() / 400
        assert area == pytest.approx(math.pi * radius**2, rel=0.02)
        assert not (inside & (u**2 + v**2 > (bound * radius + 0.05) ** 2)).any()
        assert inside[200, 200] or name == "ring"  # filled at the centre (the ring's hole is not)


def test_a_trunk_trains_on_it_through_the_registry():
    from lth_sweep.trainables.specs import DataSpec, ModelSpec, TrainSpec, TrunkSpec
    from lth_sweep.trainables.trunk import train_trunk

    data = DataSpec(name="clutter", image_size=16, train_size=140, test_size=70, ood_size=0)
    trunk = TrunkSpec(data=data, model=ModelSpec(name="conv4", width=4), train=TrainSpec(epochs=1, batch_size=35), seed=0)
    result = train_trunk(trunk)
    assert result.total_iterations == 4
    assert result.final["fc.weight"].shape == (35, 16)  # one output per class
    assert 0.0 <= result.metrics["test/acc"] <= 1.0 and result.metrics["test/loss"] > 0
