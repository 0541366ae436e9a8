"""OOD AUROC, FGSM/PGD, early stopping, and the common corruptions with mCE."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lth_sweep.analysis.corruptions import (
    CORRUPTIONS,
    MIN_TRUNK_MISTAKES,
    corrupt,
    corruption_ces,
    corruption_errors,
    mce,
    mistakes,
)
from lth_sweep.analysis.dimension import Network, Reference
from lth_sweep.analysis.dimensions.robustness import measure as measure_robustness
from lth_sweep.analysis.measure_tools import sample
from lth_sweep.analysis.analysis_spec import AnalysisSpec
from lth_sweep.analysis.robustness import (
    fgsm_accuracy,
    gaussian_noise_images,
    ood_auroc,
    pgd_accuracy,
    predict_logits,
)
from lth_sweep.trainables.data import Dataset, ImageSplit, make_generator
from lth_sweep.trainables.early_stopping import ValidationTracker, early_stopping_iteration
from lth_sweep.trainables.data.shapes import CLASS_NAMES, generate

MEAN, STD = 0.5, 0.25
pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: tests/unit/conftest.py


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
    clean = (predict_logits(model, test.images).argmax(1) == test.labels).float().mean().item()
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
    # pooled: every error over every trunk error, not Hendrycks & Dietterich's mean of per-corruption ratios
    assert mce(errors, reference) == pytest.approx((0.3 + 0.3 + 0.2 + 0.2) / (0.2 + 0.4 + 0.1 + 0.1))
    assert corruption_ces(errors, reference) == {"a": pytest.approx(0.6 / 0.6), "b": pytest.approx(0.4 / 0.2)}
    with pytest.raises(KeyError):
        mce({("c", 1): 0.1}, reference)
    assert math.isnan(mce({("b", 1): 0.5}, {("b", 1): 0.0}))


def test_every_corruption_counts_in_the_mce_whichever_ones_the_trunk_errs_on():
    """Two seeds whose trunks err on different corruptions: both mCEs pool the same set, {a, b}.
    The old per-corruption mean dropped the corruption the trunk never erred on, so seed 0 averaged
    {a} and seed 1 {b}, and the network's failures on the dropped one vanished."""
    network = {("a", 1): 0.3, ("a", 2): 0.3, ("b", 1): 0.5, ("b", 2): 0.1}
    trunks = {
        0: {("a", 1): 0.2, ("a", 2): 0.4, ("b", 1): 0.0, ("b", 2): 0.0},
        1: {("a", 1): 0.0, ("a", 2): 0.0, ("b", 1): 0.3, ("b", 2): 0.3},
    }
    for trunk in trunks.values():
        assert set(corruption_ces(network, trunk)) == {"a", "b"}  # undefined ones are NaN, not dropped
        assert mce(network, trunk) == pytest.approx(1.2 / sum(trunk.values()))
    assert mce(network, trunks[0]) == pytest.approx(2.0)  # the old mean over {a} alone: 1.0
    assert math.isnan(corruption_ces(network, trunks[0])["b"])
    assert mistakes(trunks[0], images=10) == 6


def _network(model, split, seed, robustness, tmp_path) -> Network:
    dataset = Dataset(
        name="shapes", train=split, test=split, ood=None, class_names=list(CLASS_NAMES), concept_names=[],
        class_concepts=[], mean=(MEAN,), std=(STD,),
    )
    spec = AnalysisSpec.model_validate({"seed": seed, "robustness": {"fgsm_eps": 0, "ood_noise": False, **robustness}})
    return Network(model, {}, dataset, spec, "round_01", tmp_path, data_id="shapes-test")


def _measure_robustness(net: Network, reference: Reference | None) -> tuple[dict, Reference]:
    metrics = {}
    return metrics, Reference(**measure_robustness(net, reference, metrics))


@pytest.fixture(scope="module")
def pruned(trained):
    """The trained MLP with the 90% smallest first-layer weights zeroed: worse under corruption."""
    model, _ = trained
    copy = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 9))
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        weight = copy[1].weight
        weight[weight.abs() < weight.abs().flatten().quantile(0.9)] = 0
    return copy


def test_measured_mce_pools_every_corruption_for_every_seed(trained, pruned, tmp_path):
    model, test = trained
    names = ["gaussian_noise", "brightness", "contrast", "pixelate"]
    robustness = {"images": 40, "corruptions": names, "severities": [1, 5]}
    for seed in (0, 1, 2):
        dense, reference = _measure_robustness(_network(model, test, seed, robustness, tmp_path), None)
        metrics, _ = _measure_robustness(_network(pruned, test, seed, robustness, tmp_path), reference)
        assert dense["corrupt/mce_corruptions"] == metrics["corrupt/mce_corruptions"] == len(names)
        assert metrics["corrupt/mce_trunk_errors"] == mistakes(reference.corruption_errors, 40) >= MIN_TRUNK_MISTAKES
        assert dense["corrupt/mce"] == 1.0
        chosen = sample(test, 40, seed, "robustness")  # the images _robustness corrupts
        ours = corruption_errors(pruned, chosen.images, chosen.labels, to_pixels, from_pixels, names, (1, 5), seed=seed)
        assert metrics["corrupt/mce"] == pytest.approx(sum(ours.values()) / sum(reference.corruption_errors.values()))
        p = metrics["corrupt/acc"]
        assert metrics["se/corrupt/acc"] == pytest.approx(math.sqrt(p * (1 - p) / 40))  # N = distinct images


def test_mce_is_undefined_when_the_trunk_makes_too_few_mistakes(trained, tmp_path):
    model, test = trained
    robustness = {"images": 10, "corruptions": ["brightness"], "severities": [1]}  # 10 evaluations at most
    dense, _ = _measure_robustness(_network(model, test, 0, robustness, tmp_path), None)
    assert dense["corrupt/mce_trunk_errors"] == round(10 * (1 - dense["corrupt/acc"])) < MIN_TRUNK_MISTAKES
    assert "corrupt/mce" not in dense
    assert "se/corrupt/acc" in dense


def test_auroc_standard_error_is_hanley_and_mcneil_s():
    from lth_sweep.analysis.robustness import auroc_se

    # At A = 0.5 it is the Mann-Whitney statistic's null variance, (n_p + n_n + 1) / (12 n_p n_n).
    assert auroc_se(0.5, 40, 60) == pytest.approx(((40 + 60 + 1) / (12 * 40 * 60)) ** 0.5)
    assert auroc_se(0.9, 500, 500) < auroc_se(0.9, 50, 50)
    assert auroc_se(1.0, 50, 50) == 0.0
