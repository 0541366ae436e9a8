"""Winning tickets, regions, LTH-PASS on synthetic curves; statistics across seeds."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis.noninferiority import paired_difference
from analysis.stats import paired_test, summarise
from analysis.verdicts import higher_is_better, lth_pass, no_worse, regions

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


def test_lth_pass_needs_every_metric():
    curves = {"test/acc": ACC, "calib/ece": ECE}
    assert lth_pass(curves, {"test/acc": 0.90, "calib/ece": 0.04}) == [0.2, 0.36]
    assert lth_pass(curves, {"test/acc": 0.90, "calib/ece": 0.04}, {"test/acc": 0.02, "calib/ece": 0.01}) == [0.2, 0.36, 0.49, 0.59]
    assert lth_pass({"test/acc": ACC[:2], "calib/ece": ECE[1:]}, {"test/acc": 0.5, "calib/ece": 1.0}) == [0.36]
    assert lth_pass({}, {}) == []
    assert no_worse(0.9, 0.9, True) and not no_worse(0.9, math.nan, True)


def test_summarise_ci_is_the_t_interval():
    values = [0.80, 0.82, 0.85, 0.79, 0.84]
    s = summarise(values)
    mean, std = np.mean(values), np.std(values, ddof=1)
    half = stats.t.ppf(0.975, 4) * std / math.sqrt(5)  # t_{0.975, 4} = 2.7764
    assert stats.t.ppf(0.975, 4) == pytest.approx(2.776445, rel=1e-6)
    assert (s.mean, s.std, s.n) == (pytest.approx(0.82), pytest.approx(std), 5)
    assert (s.ci_low, s.ci_high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    low, high = stats.t.interval(0.95, 4, loc=mean, scale=std / math.sqrt(5))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_summarise_degenerate_cases():
    one = summarise([0.7])
    assert one.mean == 0.7 and one.n == 1 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert summarise([]).n == 0 and math.isnan(summarise([]).mean)
    flat = summarise([0.5, 0.5, 0.5])
    assert flat.std == 0.0 and math.isnan(flat.ci_low) and math.isnan(flat.ci_high)  # no zero-width interval
    assert summarise([0.5, math.nan, 0.7]).n == 2


def test_paired_test():
    sparse, dense = [0.91, 0.92, 0.90, 0.93], [0.90, 0.90, 0.91, 0.90]
    result = paired_test(sparse, dense)
    assert result.n == 4 and result.mean_diff == pytest.approx(0.0125)
    assert result.p_value == pytest.approx(stats.ttest_rel(sparse, dense).pvalue)
    assert math.isnan(result.p_wilcoxon)  # n < 6
    rng = np.random.default_rng(0)
    dense8 = rng.normal(0.9, 0.01, 8)
    sparse8 = dense8 + rng.normal(0.01, 0.005, 8)
    big = paired_test(sparse8, dense8)
    assert big.p_wilcoxon == pytest.approx(stats.wilcoxon(sparse8 - dense8).pvalue)
    for degenerate in (paired_test([0.9], [0.8]), paired_test([0.9, 0.8], [0.8, 0.7]), paired_test([0.5] * 7, [0.5] * 7)):
        assert math.isnan(degenerate.p_value) and math.isnan(degenerate.p_wilcoxon)
    assert paired_test([0.9, math.nan, 0.8], [0.8, 0.9, 0.85]).n == 2
    with pytest.raises(ValueError):
        paired_test([1, 2], [1])


def test_no_confidence_from_two_seeds_or_a_zero_spread_difference():
    tie = paired_difference([0.0, 0.0, 0.0], 0.001, margin=0.005)
    assert tie.matches and not tie.confident and tie.not_confident_because.startswith("no spread across seeds")
    two = paired_difference([0.001, 0.002], 0.0, margin=0.005)
    assert two.matches and not two.confident and two.not_confident_because == "2 seed(s): confidence needs 3+"
    three = paired_difference([0.001, 0.002, 0.0015], 0.0, margin=0.005)
    assert three.confident and three.df == 2  # no sampling error: the seeds' t with n - 1 df
