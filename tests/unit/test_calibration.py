"""Calibration metrics against values computed by hand on tiny cases."""
from __future__ import annotations

import math

import pytest
import torch

from lth_sweep.analysis.calibration import ece, nll, sce


def test_perfectly_calibrated_predictor_scores_zero():
    # Confidence 0.8 on class 0 and right 8 times out of 10; class 1 at 0.2, true 2 times in 10.
    probs = torch.tensor([[0.8, 0.2]] * 10, dtype=torch.float64)
    labels = torch.tensor([0] * 8 + [1] * 2)
    assert ece(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert sce(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_overconfident_predictor_ece_by_hand():
    # Bin of 0.9: 4 examples, accuracy 1/2 -> 4/6 * 0.4; bin of 0.6: 2 examples, accuracy 1 -> 2/6 * 0.4.
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    labels = torch.tensor([0, 0, 1, 1, 0, 0])
    assert ece(probs, labels) == pytest.approx(4 / 6 * 0.4 + 2 / 6 * 0.4)


def test_sce_counts_every_class_not_only_the_top_one():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.2, 0.3]])
    labels = torch.tensor([0, 0])
    # ECE: one bin at confidence 0.5, accuracy 1 -> 0.5.
    assert ece(probs, labels) == pytest.approx(0.5)
    # SCE = 1/(nC) sum_c sum_m |hits - sum p|: class 0 |2 - 1.0|; class 1: 0.3 and 0.2 fall in
    # different bins, |0 - 0.3| + |0 - 0.2|; class 2 likewise 0.5.  (1 + 0.5 + 0.5) / 6.
    assert sce(probs, labels) == pytest.approx(2.0 / 6)


def test_ece_bins_are_equal_width_and_right_closed():
    # With 2 bins, 0.5 belongs to (0, 0.5] and 0.75 to (0.5, 1].
    probs = torch.tensor([[0.5, 0.5], [0.75, 0.25]])
    labels = torch.tensor([0, 1])
    # bin 1: conf 0.5, acc 1 -> 1/2 * 0.5; bin 2: conf 0.75, acc 0 -> 1/2 * 0.75
    assert ece(probs, labels, bins=2) == pytest.approx(0.25 + 0.375)
    # One bin: |mean acc - mean conf| = |0.5 - 0.625|.
    assert ece(probs, labels, bins=1) == pytest.approx(0.125)


def test_nll_from_probabilities_and_from_logits():
    probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    labels = torch.tensor([0, 1])
    assert nll(probs, labels) == pytest.approx((math.log(2) - math.log(0.75)) / 2)
    logits = torch.log(probs) + 3.0  # a constant shift leaves the softmax unchanged
    assert nll(logits, labels, from_logits=True) == pytest.approx(nll(probs, labels))
    # A certain mistake is floored, not infinite.
    assert math.isfinite(nll(torch.tensor([[1.0, 0.0]]), torch.tensor([1])))


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        ece(torch.ones(3, 2) / 2, torch.zeros(4, dtype=torch.long))


def test_bootstrap_se_of_accuracy_matches_the_binomial_formula():
    from lth_sweep.analysis.sampling_error import bootstrap_se

    labels = torch.zeros(400, dtype=torch.long)
    probs = torch.zeros(400, 2)
    probs[:300, 0] = 1.0  # 300 right, 100 wrong: p = 0.75
    probs[300:, 1] = 1.0

    def accuracy(p, y):  # per draw: (draws, N, 2), (draws, N) -> (draws,)
        return (p.argmax(2) == y).double().mean(1)

    binomial = (0.75 * 0.25 / 400) ** 0.5
    assert bootstrap_se(accuracy, (probs, labels), seed=0, draws=2000) == pytest.approx(binomial, rel=0.1)
    assert bootstrap_se(accuracy, (probs, labels), seed=3) == bootstrap_se(accuracy, (probs, labels), seed=3)

