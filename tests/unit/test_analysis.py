"""The whole analysis of a round, as the actors run it, on a really trained dense network of the
built-in dataset: the dense trunk explains itself correctly, a network compared with itself is
exactly consistent, and a network with shuffled weights is clearly not."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lth_sweep.analysis.actors import DONE_MARKER, Analyzer
from lth_sweep.analysis.analysis_spec import AnalysisSpec
from lth_sweep.trainables.specs import DataSpec, LineageSpec, ModelSpec, TrainSpec, TrunkSpec
from lth_sweep.trainables.trunk import train_trunk

SMALL = {
    "gradcam": {"images": 128},
    "concepts": {"train_images": 600, "eval_images": 300},
    "lime": {"images": 4, "samples": 32},
    "mis": {"images": 200},
    "robustness": {"images": 64, "pgd_steps": 2, "severities": [1, 5]},
    "flatness": {"images": 32, "iterations": 3, "bisections": 3},
}
CONSISTENCY = ["xai/gradcam_rank_corr", "xai/gradcam_iou_top10", "xai/gradcam_cosine", "xai/concept_jaccard_top3", "xai/concept_kendall_tau"]

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: tests/unit/conftest.py


@pytest.fixture(scope="module")
def trained():
    """Conv-4 (width 16) on 16 px shapes: 97.75% test accuracy in ~8 s on one core."""
    trunk = TrunkSpec(
        data=DataSpec(image_size=16, train_size=3000, test_size=400, ood_size=100),
        model=ModelSpec(name="conv4", width=16),
        train=TrainSpec(epochs=8, lr=0.002),
        seed=0,
    )
    result = train_trunk(trunk)
    analyzer = Analyzer(AnalysisSpec.model_validate(SMALL))
    dense_metrics, reference, folder = analyzer.reference(trunk, result.final)
    return trunk, result, analyzer, dense_metrics, reference, folder


def test_the_dense_trunk_looks_at_the_object_and_recovers_the_true_concepts(trained):
    trunk, result, _, dense, _, folder = trained
    assert result.metrics["test/acc"] > 0.9
    # Measured: energy on the object 0.38 (the object covers 0.21 of the image: chance), pointing
    # game 0.90, true concepts recovered for 9 of 9 classes, PCBM accuracy 0.98.
    assert dense["xai/gradcam_energy_in_object"] > 0.3
    assert dense["xai/gradcam_pointing_game"] > 0.8
    assert dense["xai/concept_recovery"] >= 7 / 9
    assert dense["xai/concept_pcbm_acc"] > 0.9
    assert dense["corrupt/mce"] == 1.0  # the trunk is its own reference
    assert {p.name for p in (folder / "xai").iterdir()} == {"gradcam_dense.png", "concepts_dense.csv", "gradcam_per_class_dense.csv"}
    per_class = (folder / "xai" / "gradcam_per_class_dense.csv").read_text().splitlines()
    assert per_class[0] == "class,images,energy_in_object,pointing_game" and len(per_class) == 1 + 9  # every class sampled
    assert not [key for key in dense if "/class/" in key]  # no per-class metrics


def test_a_network_compared_with_itself_is_exactly_consistent(trained):
    trunk, result, analyzer, _, reference, _ = trained
    lineage = LineageSpec(trunk=trunk, pruning={"method": "imp"})
    metrics, folder = analyzer.analyze(lineage, reference, 1, result.final, {})
    for name in CONSISTENCY:
        assert metrics[name] == 1.0, name
    assert metrics["corrupt/mce"] == 1.0
    assert {p.name for p in (folder / "xai").iterdir()} == {"gradcam_round_01.png", "concepts_round_01.csv", "gradcam_per_class_round_01.csv"}
    assert metrics[DONE_MARKER] > 0


def test_a_network_with_shuffled_weights_scores_clearly_lower(trained):
    trunk, result, analyzer, dense, reference, _ = trained
    generator = torch.Generator().manual_seed(0)
    shuffled = {}
    for name, array in result.final.items():
        flat = torch.tensor(array).flatten()
        shuffled[name] = flat[torch.randperm(flat.numel(), generator=generator)].view(array.shape).numpy()
    lineage = LineageSpec(trunk=trunk, pruning={"method": "imp"})
    metrics, _ = analyzer.analyze(lineage, reference, 1, shuffled, {})
    # Measured: rank correlation 0.09, pointing 0.30, energy 0.19, PCBM accuracy 0.34, Kendall tau
    # 0.89. The top concepts barely move (Jaccard 0.96): the classes are defined by shape and
    # colour, which even random conv features encode linearly, so the PCBM still finds them.
    assert metrics["xai/gradcam_rank_corr"] < 0.3
    assert metrics["xai/gradcam_pointing_game"] < dense["xai/gradcam_pointing_game"] - 0.3
    assert metrics["xai/gradcam_energy_in_object"] < dense["xai/gradcam_energy_in_object"] - 0.1
    assert metrics["xai/concept_pcbm_acc"] < dense["xai/concept_pcbm_acc"] - 0.3
    assert metrics["xai/concept_kendall_tau"] < 0.95


def test_analysis_is_deterministic(trained):
    trunk, result, analyzer, _, reference, _ = trained
    lineage = LineageSpec(trunk=trunk, pruning={"method": "imp"})
    first, _ = analyzer.analyze(lineage, reference, 2, result.final, {})
    again, _ = Analyzer(AnalysisSpec.model_validate(SMALL)).analyze(lineage, reference, 2, result.final, {})
    measured = {k: v for k, v in first.items() if not k.startswith("analysis/seconds")}
    assert measured == {k: v for k, v in again.items() if not k.startswith("analysis/seconds")}
    assert all(np.isfinite(v) for v in measured.values())


def test_a_network_pruned_dead_is_measured_and_its_concepts_logged_as_collapsed(trained):
    """Before: a network whose last conv layer was pruned away (all-methods.yaml's channel_in at
    99% sparsity) failed its lineage: every embedding unit constant, each concept vector 0/0 = NaN,
    and scikit-learn refused the NaN projections. Its concept metrics are now NaN, which the
    verdicts read as a collapse, and every other dimension is measured."""
    trunk, result, analyzer, _, reference, _ = trained
    last_conv = [name for name, array in result.final.items() if name.startswith("features") and np.ndim(array) == 4][-1]
    dead = {name: (np.zeros_like(array) if name.startswith(last_conv.rsplit(".", 1)[0]) else array) for name, array in result.final.items()}
    lineage = LineageSpec(trunk=trunk, pruning={"method": "imp"})
    metrics, _ = analyzer.analyze(lineage, reference, 1, dead, {})
    concepts = {key: value for key, value in metrics.items() if key.startswith("xai/concept_")}
    assert set(concepts) == {"xai/concept_cav_acc", "xai/concept_pcbm_acc", "xai/concept_recovery", "xai/concept_recovery_margin",
                             "xai/concept_jaccard_top3", "xai/concept_kendall_tau"}
    assert all(np.isnan(value) for value in concepts.values())
    assert np.isfinite(metrics["calib/ece"]) and np.isfinite(metrics["corrupt/acc"])
