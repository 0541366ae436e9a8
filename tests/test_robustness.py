"""OOD AUROC, FGSM/PGD, early stopping, and the common corruptions with mCE."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis.corruptions import CORRUPTIONS, corrupt, corruption_ces, corruption_errors, mce, relative_mce
from analysis.robustness import (
    fgsm_accuracy,
    gaussian_noise_images,
    ood_auroc,
    pgd_accuracy,
    predict_probs,
)
from trainables.data import ImageSplit, make_generator
from trainables.early_stopping import ValidationTracker, early_stopping_iteration
from trainables.data.shapes import generate

MEAN, STD = 0.5, 0.25


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def to_pixels(x):
    return x * STD + MEAN


def from_pixels(p):
    return (p - MEAN) / STD


def test_auroc_of_separable_scores_is_one_and_reversed_is_zero():
    confident = torch.tensor([[0.9, 0.1], [0.95, 0.05], [0.8, 0.2]])
    unsure = torch.tensor([[0.55, 0.45], [0.6, 0.4]])
    assert ood_auroc(confident, unsure) == 1.0
    assert ood_auroc(unsure, confident) == 0.0
    assert ood_auroc(unsure, unsure) == 0.5


def test_gaussian_noise_ood_matches_pixel_statistics_and_is_seeded():
    images = from_pixels(torch.rand(200, 3, 8, 8) * 0.5 + 0.25)
    noise = gaussian_noise_images(images, to_pixels, from_pixels, n=300, seed=1)
    pixels = to_pixels(noise)
    assert noise.shape == (300, 3, 8, 8) and pixels.min() >= 0 and pixels.max() <= 1
    assert pixels.mean().item() == pytest.approx(0.5, abs=0.01)
    assert torch.equal(noise, gaussian_noise_images(images, to_pixels, from_pixels, n=300, seed=1))


def test_fgsm_on_a_linear_model_matches_the_hand_derivation():
    # logits = W x' with x' = (p - 0.5) / 0.25 and W rows (1, 0), (-1, 0): class 0 iff p0 > 0.5.
    # For label 0 the CE gradient w.r.t. p is 2 s1 (W1 - W0) / 0.5, sign (-1, 0): p0 decreases by
    # eps; for label 1 it increases. The second pixel's gradient is 0 (sign 0): it never moves.
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    p0 = torch.tensor([0.51, 0.52, 0.60, 0.90, 0.45, 0.10, 0.70])
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    pixels = torch.stack([p0, torch.full_like(p0, 0.3)], 1).view(-1, 1, 1, 2)
    eps = 0.03
    moved = (p0 + torch.where(labels == 0, -eps, eps)).clamp(0, 1)
    expected = ((moved > 0.5).long() == (labels == 0).long()).float().mean().item()
    assert expected == pytest.approx(4 / 7)  # .51/.52 flip; .70 (already wrong) stays wrong
    assert fgsm_accuracy(model, from_pixels(pixels), labels, to_pixels, from_pixels, eps=eps) == pytest.approx(expected)
    # eps = 0 is clean accuracy
    assert fgsm_accuracy(model, from_pixels(pixels), labels, to_pixels, from_pixels, eps=0.0) == pytest.approx(6 / 7)


@pytest.fixture(scope="module")
def trained():
    """A small MLP trained for well under a second on 8 px shapes."""
    torch.manual_seed(0)
    train = generate(1024, 8, make_generator(0, "train"))
    test = generate(200, 8, make_generator(0, "test"))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 9))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        batch = torch.randint(0, len(train), (256,), generator=generator)
        loss = F.cross_entropy(model(train.images[batch]), train.labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return model, test


def test_pgd_is_below_clean_and_at_least_as_strong_as_fgsm(trained):
    model, test = trained
    clean = (predict_probs(model, test.images).argmax(1) == test.labels).float().mean().item()
    assert clean > 0.4, clean
    for eps in (2 / 255, 4 / 255):
        fgsm = fgsm_accuracy(model, test.images, test.labels, to_pixels, from_pixels, eps=eps)
        pgd = pgd_accuracy(model, test.images, test.labels, to_pixels, from_pixels, eps=eps, steps=10, seed=0)
        assert pgd <= clean
        assert pgd <= fgsm
    again = pgd_accuracy(model, test.images, test.labels, to_pixels, from_pixels, eps=4 / 255, steps=10, seed=0)
    assert again == pgd
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # restored


def test_early_stopping_iteration_is_the_minimum_validation_loss():
    history = [(0, 2.0, 0.1), (100, 1.0, 0.5), (200, 0.7, 0.6), (300, float("nan"), 0.0), (400, 0.7, 0.61), (500, 0.9, 0.6)]
    assert early_stopping_iteration(history) == 200  # ties go to the earliest
    assert early_stopping_iteration([(5, 1.0)]) == 5
    assert early_stopping_iteration([]) is None


def test_validation_tracker_records_every_n_steps_without_touching_the_model(trained):
    model, test = trained
    split = ImageSplit(test.images[:50], test.labels[:50])
    tracker = ValidationTracker(model, split, every=3, start=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(7):
        tracker.before_step()
        tracker.after_step()
    assert [entry[0] for entry in tracker.history] == [12, 15]
    iteration, loss, acc = tracker.history[0]
    logits = model.eval()(split.images)
    model.train()
    assert loss == pytest.approx(F.cross_entropy(logits, split.labels).item(), rel=1e-5)
    assert 0 <= acc <= 1 and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert tracker.early_stopping_iteration() == 12  # same weights: equal losses, earliest wins


# ---------------------------------------------------------------- corruptions


@pytest.fixture(scope="module")
def pixels():
    return to_pixels(generate(16, 16, make_generator(1, "test")).images)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_corruption_keeps_shape_and_range_grows_with_severity_and_is_seeded(pixels, name, channels):
    x = pixels if channels == 3 else pixels.mean(1, keepdim=True)
    distortion = {}
    for severity in (1, 5):
        out = corrupt(x, name, severity, seed=3)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert out.min() >= 0 and out.max() <= 1
        assert torch.equal(out, corrupt(x, name, severity, seed=3))
        distortion[severity] = (out - x).abs().mean().item()
    if name == "saturate":
        # Hendrycks' levels desaturate (x0.3, x0.1) then oversaturate (x1.5, x2+0.1, x2.5+0.2):
        # not ordered by pixel distance; grey images have no saturation at all.
        if channels == 1:
            assert distortion[5] == 0
        else:
            assert distortion[1] < (corrupt(x, name, 2) - x).abs().mean().item()
    else:
        assert distortion[1] < distortion[5], distortion


def test_random_corruptions_depend_on_the_seed(pixels):
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"):
        assert not torch.equal(corrupt(pixels, name, 3, seed=0), corrupt(pixels, name, 3, seed=1))


def test_mce_of_the_reference_against_itself_is_exactly_one(trained):
    model, test = trained
    names = ["gaussian_noise", "contrast", "jpeg_compression"]
    errors = corruption_errors(model, test.images, test.labels, to_pixels, from_pixels, names, (1, 3, 5), seed=0)
    assert set(errors) == {(n, s) for n in names for s in (1, 3, 5)}
    assert mce(errors, errors) == 1.0
    again = corruption_errors(model, test.images, test.labels, to_pixels, from_pixels, names, (1, 3, 5), seed=0)
    assert again == errors


def test_mce_by_hand():
    reference = {("a", 1): 0.2, ("a", 2): 0.4, ("b", 1): 0.1, ("b", 2): 0.1}
    errors = {("a", 1): 0.3, ("a", 2): 0.3, ("b", 1): 0.2, ("b", 2): 0.2}
    assert mce(errors, reference) == pytest.approx((0.6 / 0.6 + 0.4 / 0.2) / 2)
    assert relative_mce(errors, 0.1, reference, 0.05) == pytest.approx((0.4 / 0.5 + 0.2 / 0.1) / 2)
    with pytest.raises(KeyError):
        mce({("c", 1): 0.1}, reference)


def test_a_corruption_the_reference_never_errs_on_is_left_out_of_the_mce():
    reference = {("a", 1): 0.2, ("a", 2): 0.4, ("b", 1): 0.0, ("b", 2): 0.0}
    errors = {("a", 1): 0.3, ("a", 2): 0.3, ("b", 1): 0.5, ("b", 2): 0.0}
    assert corruption_ces(errors, reference) == {"a": pytest.approx(1.0)}
    assert mce(errors, reference) == pytest.approx(1.0)
    assert math.isnan(mce({("b", 1): 0.5}, {("b", 1): 0.0}))
