"""LIME fidelity/stability and MIS with real captum, real scikit-image and a real (tiny) open_clip."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from lth_sweep.analysis.lime import lime_scores, superpixels
from lth_sweep.analysis.mis import (
    PERCEPTUAL_MODELS,
    HandcraftedFeatures,
    OpenClipFeatures,
    build_perceptual,
    image_features,
    mis_score,
)
from lth_sweep.trainables.data.shapes import MEAN, STD, generate
from lth_sweep.trainables.models import build_model
from lth_sweep.trainables.specs import ModelSpec


@pytest.fixture(scope="module")
def shapes():
    return generate(120, 16, torch.Generator().manual_seed(3))


class LinearProbability(nn.Module):
    """Two classes whose softmax probability of class 0 is p = 0.5 + <a, x>: linear in the input,
    hence linear in which superpixels are kept. `squash` makes it a steep sigmoid instead."""

    def __init__(self, squash: bool = False):
        super().__init__()
        self.a = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 1e-3
        self.squash = squash

    def forward(self, x):
        z = (x * self.a).sum((1, 2, 3))
        p = torch.sigmoid(200 * z) if self.squash else 0.5 + z
        p = p.clamp(1e-6, 1 - 1e-6)
        return torch.stack([p.log(), (1 - p).log()], 1)


def _conv(width: int = 4):
    torch.manual_seed(0)
    return build_model(ModelSpec(name="conv2", width=width), in_channels=3, image_size=16, num_classes=9)


def test_superpixels_are_contiguous_labels(shapes):
    for image in (shapes.images[0], shapes.images[0][:1]):
        segments = superpixels(image, 16)
        assert segments.shape == (16, 16) and segments.min() == 0
        assert torch.equal(segments.unique(), torch.arange(int(segments.max()) + 1))
        assert 4 <= int(segments.max()) + 1 <= 30


def test_lime_is_finite_and_deterministic(shapes):
    model = _conv()
    model.train()
    kwargs = dict(samples=50, held_out=30, images_limit=3)
    first = lime_scores(model, shapes.images, shapes.labels, seed=0, **kwargs)
    assert model.training
    assert set(first) == {"lime_fidelity", "lime_stability"}
    assert all(math.isfinite(v) and v >= 0 for v in first.values())
    assert lime_scores(model, shapes.images, shapes.labels, seed=0, **kwargs) == first
    assert lime_scores(model, shapes.images, shapes.labels, seed=1, **kwargs) != first


def test_lime_fidelity_is_near_zero_for_a_linear_output(shapes):
    targets = torch.zeros(len(shapes), dtype=torch.long)
    kwargs = dict(samples=80, held_out=60, images_limit=4)
    linear = lime_scores(LinearProbability(), shapes.images, targets, **kwargs)
    steep = lime_scores(LinearProbability(squash=True), shapes.images, targets, **kwargs)
    # Measured: linear fidelity 4e-6 (ridge shrinkage only), steep sigmoid 2.5e-2; stability 1e-7.
    assert linear["lime_fidelity"] < 1e-4
    assert steep["lime_fidelity"] > 100 * linear["lime_fidelity"]
    # A 5% nudge of a linear model moves its explanation very little.
    assert linear["lime_stability"] < 1e-5


def test_lime_on_grey_images(shapes):
    model = build_model(ModelSpec(name="conv2", width=4), in_channels=1, image_size=16, num_classes=9)
    scores = lime_scores(model, shapes.images[:, :1], shapes.labels, samples=40, held_out=20, images_limit=2)
    assert all(math.isfinite(v) for v in scores.values())


class Table(nn.Module):
    """A "network" whose inputs are image indices and whose `unit` layer emits a fixed table of
    activations: lets a test choose exactly what each unit responds to."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table
        self.unit = nn.Identity()

    def forward(self, index):
        return self.unit(self.table[index[:, 0].long()])


def _indices(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float32)[:, None]


@pytest.fixture(scope="module")
def pixels(shapes):
    return shapes.images * STD + MEAN


def test_mis_of_perceptual_units_is_high_and_of_random_units_chance(pixels):
    features = image_features(HandcraftedFeatures(), pixels)
    unit = nn.functional.normalize(features, dim=1)
    prototypes = Table(unit @ unit[:8].T)  # activation = perceptual similarity to an image
    noise = Table(torch.randn(len(pixels), 64, generator=torch.Generator().manual_seed(0)))
    n = _indices(len(pixels))
    kwargs = dict(tasks_per_unit=10, features=features)
    high = mis_score(prototypes, prototypes.unit, n, None, None, units=8, **kwargs)
    chance = mis_score(noise, noise.unit, n, None, None, units=64, **kwargs)
    # Measured: 0.99 and 0.50.
    assert high["mis"] > 0.9 and high["mis_units"] == 8
    assert abs(chance["mis"] - 0.5) < 0.05
    assert mis_score(noise, noise.unit, n, None, None, units=64, **kwargs) == chance


def test_mis_on_a_conv_layer_with_grey_images_and_dead_units(shapes, pixels):
    model = build_model(ModelSpec(name="conv2", width=4), in_channels=1, image_size=16, num_classes=9)
    with torch.no_grad():
        model.gradcam_layer.weight[:2] = 0  # two removed filters: constant output, left out
        model.gradcam_layer.bias[:2] = 0
    grey_images, grey_pixels = shapes.images[:, :1], pixels[:, :1]
    scores = mis_score(model, model.gradcam_layer, grey_images, grey_pixels, HandcraftedFeatures(), units=8)
    assert scores["mis_units"] == 2  # 4 channels, 2 dead
    assert 0 <= scores["mis"] <= 1 and math.isfinite(scores["mis_std"])
    cached = image_features(HandcraftedFeatures(), grey_pixels)
    assert mis_score(model, model.gradcam_layer, grey_images, None, None, units=8, features=cached) == scores
    with pytest.raises(ValueError, match="at least"):
        mis_score(model, model.gradcam_layer, grey_images[:40], grey_pixels[:40], HandcraftedFeatures())


def test_open_clip_perceptual_model_without_weights(tmp_path, pixels):
    import open_clip

    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    }
    (tmp_path / "lth-tiny-vit.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "lth-tiny-vit.json")
    torch.manual_seed(0)
    perceptual = build_perceptual("open_clip", model_name="lth-tiny-vit")
    assert isinstance(perceptual, OpenClipFeatures)
    features = image_features(perceptual, pixels[:, :1])  # grey works too
    assert features.shape == (len(pixels), 16) and torch.isfinite(features).all()
    model = Table(torch.randn(len(pixels), 4, generator=torch.Generator().manual_seed(0)))
    scores = mis_score(model, model.unit, _indices(len(pixels)), pixels, perceptual, units=4)
    assert 0 <= scores["mis"] <= 1
    with pytest.raises(FileNotFoundError, match="local file"):
        OpenClipFeatures("lth-tiny-vit", pretrained="openai")


def test_perceptual_registry_errors():
    assert set(PERCEPTUAL_MODELS) == {"handcrafted", "open_clip", "dreamsim"}
    with pytest.raises(ValueError, match="handcrafted"):
        build_perceptual("lpips")
    with pytest.raises(ImportError, match="pip install dreamsim"):
        build_perceptual("dreamsim", weights_dir="/nonexistent")
