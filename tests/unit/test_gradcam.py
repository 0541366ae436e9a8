"""Grad-CAM on a really trained network of the built-in shapes dataset: it looks at the object, it
agrees with itself exactly, and a weight-shuffled copy does neither."""
from __future__ import annotations

import math

import pytest
import torch

from lth_sweep.analysis.gradcam import (
    consistency,
    default_tolerance,
    gradcam_maps,
    localisation,
    per_class,
    overlay_grid,
    summarise,
)
from lth_sweep.trainables.data.shapes import CLASS_NAMES, MEAN, STD, generate
from lth_sweep.trainables.models import build_model
from lth_sweep.trainables.specs import ModelSpec, TrainSpec
from lth_sweep.trainables.training import evaluate, train


def _model():
    return build_model(ModelSpec(name="conv2", width=8), in_channels=3, image_size=16, num_classes=9)


@pytest.fixture(scope="module")
def trained():
    """A Conv-2 of width 8 trained for 2 epochs on 1500 16-px images (~5-10 s on 2 cores)."""
    torch.manual_seed(0)
    model = _model()
    train_split = generate(1500, 16, torch.Generator().manual_seed(0))
    test_split = generate(160, 16, torch.Generator().manual_seed(1))
    train(model, train_split, TrainSpec(epochs=2, batch_size=64, lr=3e-3), seed=0)
    assert evaluate(model, test_split)["acc"] > 0.3  # 9 classes: chance is 0.11
    return model, test_split


@pytest.fixture(scope="module")
def shuffled(trained):
    """The trained network with every weight tensor's entries permuted: same weight statistics,
    no learnt structure."""
    model, _ = trained
    copy = _model()
    copy.load_state_dict(model.state_dict())
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in copy.named_parameters():
            if name.endswith("weight"):
                param.copy_(param.flatten()[torch.randperm(param.numel(), generator=generator)].view_as(param))
    return copy


@pytest.fixture(scope="module")
def maps(trained, shuffled):
    model, data = trained
    return gradcam_maps(model, data.images, data.labels), gradcam_maps(shuffled, data.images, data.labels)


def test_maps_have_input_size_are_non_negative_and_restore_mode(trained):
    model, data = trained
    model.train()
    cams = gradcam_maps(model, data.images[:5], data.labels[:5], batch_size=2)
    assert model.training
    assert cams.shape == (5, 16, 16) and cams.dtype == torch.float32
    assert (cams >= 0).all() and cams.flatten(1).amax(1).gt(0).all()


def test_batched_maps_equal_per_image_maps(trained):
    model, data = trained
    batched = gradcam_maps(model, data.images[:24], data.labels[:24])
    single = torch.cat([gradcam_maps(model, data.images[i : i + 1], data.labels[i : i + 1]) for i in range(24)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


def test_trained_network_looks_at_the_object(trained, maps):
    _, data = trained
    scores = localisation(maps[0], data.masks)
    area = data.masks.float().mean().item()  # ~0.21: the share a uniform map would get
    # Measured: energy 0.63, pointing 1.00 (2 epochs, seed 0, test accuracy 0.46).
    assert scores["energy_in_object"].mean() > max(0.45, 2 * area)
    assert scores["pointing_hit"].mean() > 0.85


def test_shuffled_network_scores_lower(trained, maps):
    _, data = trained
    reference, shuffled_maps = maps
    trained_loc = localisation(reference, data.masks)
    shuffled_loc = localisation(shuffled_maps, data.masks)
    # Measured: trained energy 0.63 / pointing 1.00, shuffled 0.29 / 0.63 (area, i.e. chance: 0.21).
    assert shuffled_loc["energy_in_object"].mean() < trained_loc["energy_in_object"].mean() - 0.2
    assert shuffled_loc["pointing_hit"].mean() < trained_loc["pointing_hit"].mean() - 0.2

    against_shuffled = consistency(reference, shuffled_maps)
    # Measured: rank_corr 0.12, iou_top 0.10, cosine 0.40 (1.0 against itself).
    assert against_shuffled["rank_corr"].mean() < 0.4
    assert against_shuffled["iou_top"].mean() < 0.3
    assert against_shuffled["cosine"].mean() < 0.6


def test_self_consistency_is_exactly_one(maps):
    for cams in maps:  # includes all-zero maps of the shuffled network
        for name, values in consistency(cams, cams).items():
            assert torch.equal(values, torch.ones(len(cams))), name


def test_consistency_of_constant_and_tied_maps():
    zero, flat = torch.zeros(1, 4, 4), torch.full((1, 4, 4), 0.5)
    peaked = torch.zeros(1, 4, 4)
    peaked[0, 1, 2] = 1.0
    for a, b, expected in [(zero, zero, 1.0), (zero, flat, 0.0), (zero, peaked, 0.0), (peaked, zero, 0.0)]:
        for name, values in consistency(a, b).items():
            assert values.item() == expected, (name, expected)
    shifted = torch.zeros(1, 4, 4)
    shifted[0, 3, 0] = 1.0
    scores = consistency(peaked, shifted, top_percent=100 / 16)
    assert scores["iou_top"].item() == 0.0 and scores["cosine"].item() == 0.0
    assert -1.0 <= scores["rank_corr"].item() < 0.0  # one pixel up, another down: negative Spearman


def test_maps_with_disjoint_supports_share_no_top_pixels():
    """Each map is positive on 5 pixels of 256; the top 10% is 26 pixels. Filling the other 21 by
    pixel index gave both the same zero pixels: IoU 0.68 for maps that share nothing."""
    left, right = torch.zeros(1, 16, 16), torch.zeros(1, 16, 16)
    left[0, 12, 1:6] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    right[0, 3, 9:14] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    scores = consistency(left, right, top_percent=10)
    assert scores["iou_top"].item() == 0.0 and scores["cosine"].item() == 0.0
    assert consistency(left, left.clone(), top_percent=10)["iou_top"].item() == 1.0
    grown = left.clone()
    grown[0, 13, 1:4] = 0.5  # 3 more positive pixels, below all of left's: still under 26
    assert consistency(left, grown, top_percent=10)["iou_top"].item() == pytest.approx(5 / 8)


def test_top_pixels_tied_at_the_threshold_are_all_in_wherever_they_lie():
    """Two pixels tie for a one-pixel top set: both are in, so the IoU with a map that peaks at one
    of them is 1/2 whichever comes first in raster order (index order gave 1 or 0)."""
    for first, second in [((0, 0), (3, 3)), ((3, 3), (0, 0))]:
        tied, single = torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)
        tied[0, 0, 0] = tied[0, 3, 3] = 1.0
        tied[0, 1, 1] = 0.2
        single[0][first] = 1.0
        single[0, 1, 1] = 0.2
        for a, b in [(tied, single), (single, tied), (tied.transpose(1, 2), single.transpose(1, 2))]:
            assert consistency(a, b, top_percent=100 / 16)["iou_top"].item() == 0.5, (first, second)


def test_localisation_edge_cases():
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, 4:8, 4:8] = True
    cams = torch.zeros(2, 16, 16)
    cams[1, 8, 6] = 1.0  # one pixel below the mask: within 1 px tolerance
    scores = localisation(cams, masks)
    assert default_tolerance(16) == 1 and default_tolerance(224) == 15 and default_tolerance(32) == 2
    assert scores["energy_in_object"][0].item() == pytest.approx(16 / 256)  # zero map = uniform = area
    assert scores["pointing_hit"].tolist() == [0.0, 1.0]
    assert scores["energy_in_object"][1].item() == 0.0
    assert localisation(cams, masks, tolerance_px=0)["pointing_hit"][1].item() == 0.0


def test_per_class_values_are_a_table_not_dozens_of_metrics():
    per_image = {"iou_top": torch.tensor([1.0, 0.0, 0.5]), "cosine": torch.tensor([1.0, 1.0, 0.0])}
    assert summarise(per_image, "xai/gradcam_").keys() == {
        "xai/gradcam_iou_top", "xai/gradcam_cosine", "se/xai/gradcam_iou_top", "se/xai/gradcam_cosine"
    }
    assert per_class(per_image, torch.tensor([0, 0, 2]), ["red circle", "a/b", "x(y)"]) == [
        {"class": "red circle", "images": 2, "iou_top": 0.5, "cosine": 1.0},
        {"class": "x(y)", "images": 1, "iou_top": 0.5, "cosine": 0.0},  # no images of a/b: no row
    ]


def test_summarise_gives_the_standard_error_of_each_overall_mean():
    per_image = {"iou_top10": torch.tensor([1.0, 0.0, 0.5]), "cosine": torch.tensor([0.2, 0.2, 0.2])}
    out = summarise(per_image, "xai/gradcam_")
    assert out["se/xai/gradcam_iou_top10"] == pytest.approx(0.5 / math.sqrt(3))  # sample std 0.5
    assert out["se/xai/gradcam_cosine"] == 0.0
    assert "se/xai/gradcam_x" not in summarise({"x": torch.tensor([0.5])}, "xai/gradcam_")


def test_overlay_grid_writes_a_png(tmp_path, trained, maps):
    _, data = trained
    pixels = data.images[:4] * STD + MEAN
    titles = [CLASS_NAMES[int(label)] for label in data.labels[:4]]
    path = overlay_grid(pixels, maps[0][:4], maps[1][:4], tmp_path / "grid" / "cams.png", titles, label="shuffled")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grey = overlay_grid(pixels[:, :1], maps[0][:4], maps[0][:4], tmp_path / "grey.png")
    assert grey.stat().st_size > 1000


def test_models_without_gradcam_layer_are_refused():
    model = build_model(ModelSpec(name="lenet_300_100"), in_channels=1, image_size=8, num_classes=3)
    with pytest.raises(ValueError, match="gradcam_layer"):
        gradcam_maps(model, torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]))
