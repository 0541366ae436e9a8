"""Sampling errors of a round's difference from its dense trunk (`se_diff/<metric>`) and of its own
values (`se/<metric>`), on a really trained dense network of the built-in dataset and a pruned copy
of it: paired errors use the images both are scored on, so identical networks differ by exactly
0, and a correlated pair is more precise than two independent samples would be."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from lth_sweep.analysis import calibration, concepts, sampling_error
from lth_sweep.analysis.actors import Analyzer
from lth_sweep.analysis.analysis_spec import AnalysisSpec
from lth_sweep.analysis.measure_tools import probabilities, sample
from lth_sweep.trainables.specs import DataSpec, LineageSpec, ModelSpec, TrainSpec, TrunkSpec
from lth_sweep.trainables.trunk import build_for, cached_dataset, train_trunk

SMALL = {
    "gradcam": {"images": 96, "grid_images": 0},
    "concepts": {"train_images": 400, "eval_images": 200},
    "lime": {"images": 3, "samples": 16},
    "mis": {"images": 120},
    "robustness": {"images": 64, "pgd_steps": 2, "severities": [1, 5]},
    "flatness": {"images": 24, "iterations": 3, "bisections": 2},
}
#: compared with the trunk's value: each has a se_diff/ on a round
PAIRED = [
    "test/acc", "calib/ece", "calib/sce", "calib/nll", "ood/auroc_heldout", "ood/auroc_noise", "adv/fgsm_acc",
    "adv/pgd_acc", "corrupt/acc", "xai/gradcam_energy_in_object", "xai/gradcam_pointing_game",
    "xai/concept_recovery", "xai/concept_recovery_margin", "xai/concept_pcbm_acc", "xai/concept_cav_acc",
    "xai/mis", "xai/lime_fidelity", "xai/lime_stability", "flat/hessian_inputs",
]
#: newly given a se/ on the trunk and on every round
OWN = [
    "calib/ece", "calib/sce", "calib/nll", "xai/concept_recovery", "xai/concept_recovery_margin", "xai/concept_pcbm_acc",
    "xai/concept_cav_acc", "xai/lime_fidelity", "xai/lime_stability", "xai/mis", "flat/hessian_inputs",
]

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: tests/unit/conftest.py


@pytest.fixture(scope="module")
def trained():
    """Conv-4 (width 16) on 16 px shapes (96% test accuracy, ~4 s on one core), its Reference, and
    the same weights magnitude-pruned to half (no retraining; 93% accuracy): a sparse network
    correlated with its trunk."""
    trunk = TrunkSpec(
        data=DataSpec(image_size=16, train_size=3000, test_size=300, ood_size=80),
        model=ModelSpec(name="conv4", width=16),
        train=TrainSpec(epochs=8, lr=0.002),
        seed=0,
    )
    result = train_trunk(trunk)
    analyzer = Analyzer(AnalysisSpec.model_validate(SMALL))
    dense, reference, _ = analyzer.reference(trunk, result.final)
    pruned, masks = magnitude_pruned(result.final, keep=0.5)
    lineage = LineageSpec(trunk=trunk, pruning={"method": "imp"})
    sparse, _ = analyzer.analyze(lineage, reference, 1, pruned, masks)
    return trunk, result, analyzer, dense, reference, lineage, (pruned, masks), sparse


def magnitude_pruned(weights: dict[str, np.ndarray], keep: float) -> tuple[dict, dict]:
    """Every conv and linear weight with its smallest (1 - keep) share of magnitudes set to 0."""
    pruned, masks = dict(weights), {}
    for name, array in weights.items():
        if name.endswith(".weight") and array.ndim >= 2:
            threshold = np.quantile(np.abs(array), 1 - keep)
            masks[name] = np.abs(array) > threshold
            pruned[name] = array * masks[name]
    return pruned, masks


def test_mcnemar_se_is_the_discordant_count_formula(trained):
    trunk, result, _, _, _, _, (pruned, _), sparse = trained
    dataset = cached_dataset(trunk.data)
    test = sample(dataset.test, len(dataset.test), 0, "test")
    correct = {}
    for label, weights in (("dense", result.final), ("sparse", pruned)):
        model = build_for(trunk, dataset)
        model.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})
        correct[label] = probabilities(model.eval(), test.images).argmax(1) == test.labels
    n = len(test)
    b = int((correct["sparse"] & ~correct["dense"]).sum())  # sparse right, dense wrong
    c = int((~correct["sparse"] & correct["dense"]).sum())
    assert b + c > 0, "the pruned network should disagree with its trunk somewhere"
    expected = math.sqrt(((b + c) - (b - c) ** 2 / n) / (n * (n - 1)))
    assert sparse["se_diff/test/acc"] == pytest.approx(expected, rel=1e-12)
    assert sampling_error.paired_mean_se(correct["sparse"], correct["dense"]) == pytest.approx(expected, rel=1e-12)


def test_identical_networks_differ_by_exactly_zero(trained):
    trunk, result, analyzer, _, reference, lineage, _, _ = trained
    same, _ = analyzer.analyze(lineage, reference, 1, result.final, {})
    paired = {key: value for key, value in same.items() if key.startswith("se_diff/")}
    assert sorted(paired) == sorted(f"se_diff/{name}" for name in PAIRED)
    assert all(value == 0.0 for value in paired.values()), paired


def test_the_paired_error_is_smaller_than_two_independent_ones(trained):
    _, _, _, dense, _, _, _, sparse = trained
    for name in ("test/acc", "adv/fgsm_acc", "corrupt/acc"):
        unpaired = math.hypot(sparse[f"se/{name}"], dense[f"se/{name}"])
        assert 0 < sparse[f"se_diff/{name}"] < unpaired, name


def test_trunk_and_round_log_their_own_sampling_errors(trained):
    _, _, _, dense, _, _, _, sparse = trained
    for metrics in (dense, sparse):
        missing = [name for name in OWN if f"se/{name}" not in metrics]
        assert not missing
        assert all(np.isfinite(metrics[f"se/{name}"]) and metrics[f"se/{name}"] >= 0 for name in OWN)
    assert not [key for key in dense if key.startswith("se_diff/")]  # the trunk has nothing to differ from
    for name in ("xai/concept_jaccard_top3", "xai/concept_kendall_tau"):  # consistency: rounds only
        assert f"se/{name}" in sparse and f"se/{name}" not in dense


def test_sampling_errors_are_deterministic(trained):
    trunk, _, _, _, reference, lineage, (pruned, masks), sparse = trained
    again, _ = Analyzer(AnalysisSpec.model_validate(SMALL)).analyze(lineage, reference, 1, pruned, masks)
    errors = {key: value for key, value in sparse.items() if key.startswith(("se/", "se_diff/"))}
    assert errors == {key: again[key] for key in errors}
    predictions = torch.rand(200, 4, generator=torch.Generator().manual_seed(0)) < 0.5
    truth, other = predictions.roll(1, 0), predictions.roll(2, 0)
    statistic = concepts.batched_balanced_accuracy
    first = sampling_error.paired_bootstrap_se(statistic, (predictions, truth), (other, truth), seed=7)
    assert first == sampling_error.paired_bootstrap_se(statistic, (predictions, truth), (other, truth), seed=7)
    assert first != sampling_error.paired_bootstrap_se(statistic, (predictions, truth), (other, truth), seed=8)
    assert sampling_error.bootstrap_seed(0, "se/calib/sce") == sampling_error.bootstrap_seed(0, "se/calib/sce")
    assert sampling_error.bootstrap_seed(0, "se/calib/sce") != sampling_error.bootstrap_seed(0, "se/calib/nll")


def test_the_bootstrap_statistics_equal_the_metrics_on_each_resample():
    generator = torch.Generator().manual_seed(1)
    probs = torch.softmax(3 * torch.randn(300, 6, generator=generator), 1)
    labels = torch.randint(6, (300,), generator=generator)
    index = sampling_error.resample_index(300, seed=3, draws=4)
    counts = sampling_error.resample_counts(300, seed=3, draws=4)
    ece = calibration.binned_error_of_counts(calibration.ece_columns(probs, labels), counts)
    sce = calibration.binned_error_of_counts(calibration.sce_columns(probs, labels), counts)
    predictions, truth = torch.rand(300, 3, generator=generator) < 0.5, torch.rand(300, 3, generator=generator) < 0.3
    balanced = concepts.batched_balanced_accuracy(predictions[index], truth[index])
    for row, draw in enumerate(index):
        assert ece[row].item() == pytest.approx(calibration.ece(probs[draw], labels[draw]), abs=1e-12)
        assert sce[row].item() == pytest.approx(calibration.sce(probs[draw], labels[draw]), abs=1e-12)
        expected = np.mean([concepts._balanced_accuracy(t.numpy(), p.numpy()) for p, t in zip(predictions[draw].T, truth[draw].T)])
        assert balanced[row].item() == pytest.approx(expected, abs=1e-12)
    scores_in, scores_out = torch.rand(40, generator=generator), torch.rand(30, generator=generator).round(decimals=1)
    truth = [1] * 40 + [0] * 30
    assert sampling_error.batched_auroc(scores_in[None], scores_out[None]).item() == pytest.approx(
        roc_auc_score(truth, torch.cat([scores_in, scores_out]).numpy()), abs=1e-12
    )
    assert sampling_error.paired_auroc_se(scores_in, scores_out, scores_in, scores_out, seed=0) == 0.0


def test_flatness_statistics_get_bootstrap_errors_when_asked(trained):
    """flat/hessian_weights and flat/radius are no mean over images: with
    analysis.flatness.bootstrap_draws each is recomputed per resample, the trunk on the same
    resamples, so the round's se_diff/ is the spread of replicate-by-replicate differences
    (exactly 0 against itself, but for the radius's rounding to its bisection step). Off by
    default, and then out of the analysis' identity."""
    trunk, result, _, _, _, lineage, (pruned, masks), _ = trained
    draws = {**SMALL, "flatness": {**SMALL["flatness"], "bootstrap_draws": 6}}
    spec = AnalysisSpec.model_validate(draws)
    assert spec.canonical() != AnalysisSpec.model_validate(SMALL).canonical()
    assert AnalysisSpec.model_validate(SMALL).canonical() == AnalysisSpec.model_validate(
        {**SMALL, "flatness": {**SMALL["flatness"], "bootstrap_draws": 0}}).canonical()
    analyzer = Analyzer(spec)
    dense, reference, _ = analyzer.reference(trunk, result.final)
    sparse, _ = analyzer.analyze(lineage, reference, 1, pruned, masks)
    same, _ = analyzer.analyze(lineage, reference, 1, result.final, {})
    step = 1 / 2 ** SMALL["flatness"]["bisections"]  # two bisections: the radius to 0.25
    for name, rounding in (("flat/hessian_weights", 0.0), ("flat/radius", step / math.sqrt(12))):
        assert min(dense[f"se/{name}"], sparse[f"se/{name}"]) >= rounding * (1 - 1e-12), name
        assert dense[f"se/{name}"] > 0 and sparse[f"se/{name}"] > 0, name
        assert f"se_diff/{name}" not in dense
        assert same[f"se_diff/{name}"] == pytest.approx(math.sqrt(2) * rounding, abs=1e-15)
        assert sparse[f"se_diff/{name}"] >= math.sqrt(2) * rounding * (1 - 1e-12)
    assert sparse["se_diff/flat/hessian_weights"] > 0
    assert sparse["flat/hessian_weights"] == pytest.approx(trained[-1]["flat/hessian_weights"], rel=1e-9)
    with pytest.raises(ValueError, match="one bootstrap draw has no spread"):
        AnalysisSpec.model_validate({"flatness": {"bootstrap_draws": 1}})
