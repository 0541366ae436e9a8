"""Directions, the no-worse comparison and Chen et al.'s regions on synthetic curves; the paired difference's refusals."""
from __future__ import annotations

import math

import pytest

from lth_sweep.analysis.noninferiority import paired_difference
from lth_sweep.analysis.lineage_verdicts import higher_is_better, no_worse, regions

ACC = [(0.2, 0.91), (0.36, 0.92), (0.49, 0.905), (0.59, 0.89), (0.67, 0.85), (0.74, 0.40), (0.79, 0.11), (0.83, 0.10)]
ECE = [(0.2, 0.030), (0.36, 0.035), (0.49, 0.045), (0.59, 0.050), (0.67, 0.060), (0.74, 0.2), (0.79, 0.3), (0.83, 0.3)]


def test_directions():
    assert higher_is_better("test/acc") and higher_is_better("ood/auroc_noise") and higher_is_better("adv/fgsm_acc")
    assert not higher_is_better("calib/ece") and not higher_is_better("corrupt/mce")
    assert not higher_is_better("flat/hessian_weights") and higher_is_better("flat/radius")
    assert higher_is_better("xai/thing", {"xai/*": True})
    with pytest.raises(KeyError):
        higher_is_better("xai/unknown")


def test_no_worse_absolute_and_relative_tolerance():
    assert no_worse(0.905, 0.90, True) and not no_worse(0.89, 0.90, True)
    assert no_worse(0.89, 0.90, True, tolerance=0.01) and not no_worse(0.85, 0.90, True, tolerance=0.01)
    assert no_worse(0.85, 0.90, True, tolerance=0.06, relative=True)  # 0.85 >= 0.9 * 0.94
    assert no_worse(0.035, 0.04, False) and not no_worse(0.045, 0.04, False)
    assert no_worse(0.050, 0.04, False, tolerance=0.25, relative=True)  # allowance 0.01
    assert not no_worse(math.nan, 0.9, True)
    assert no_worse(0.9, 0.9, True) and not no_worse(0.9, math.nan, True)


def test_regions_with_chance_and_collapse():
    labelled = regions(list(reversed(ACC)), 0.90, True, tolerance=0.005, chance=0.11)
    assert [s for s, _ in labelled] == sorted(s for s, _ in ACC)
    assert [r for _, r in labelled] == ["I", "I", "I", "II", "II", "II", "III", "III"]
    # A 10-point collapse threshold puts 0.40 in III too.
    assert [r for _, r in regions(ACC, 0.90, True, 0.005, collapse=0.1)] == ["I"] * 3 + ["II"] * 2 + ["III"] * 3
    # III is a suffix: a collapse that recovers stays II.
    dip = [(0.2, 0.9), (0.4, 0.1), (0.6, 0.9), (0.8, 0.1)]
    assert [r for _, r in regions(dip, 0.9, True, collapse=0.5)] == ["I", "II", "I", "III"]
    # No threshold: no III unless NaN.
    assert [r for _, r in regions(ACC, 0.90, True)][-1] == "II"
    assert [r for _, r in regions([(0.2, 0.9), (0.4, math.nan)], 0.9, True)] == ["I", "III"]
    # Lower-is-better, relative: collapsed once the ECE exceeds 3x dense (degradation > 2x).
    assert [r for _, r in regions(ECE, 0.04, False, 0.25, relative=True, collapse=2.0)] == ["I"] * 4 + ["II"] + ["III"] * 3


def test_no_confidence_from_two_seeds_or_a_zero_spread_difference():
    tie = paired_difference([0.0, 0.0, 0.0], 0.001, margin=0.005)
    assert tie.matches and not tie.confident and tie.not_confident_because.startswith("no spread across seeds")
    two = paired_difference([0.001, 0.002], 0.0, margin=0.005)
    assert two.matches and not two.confident and two.not_confident_because == "2 seed(s): confidence needs 3+"
    three = paired_difference([0.001, 0.002, 0.0015], 0.0, margin=0.005)
    assert three.confident and three.df == 2  # no sampling error: the seeds' t with n - 1 df
