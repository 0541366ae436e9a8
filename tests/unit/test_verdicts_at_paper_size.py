"""Verdicts as a paper's sweep needs them (issue 27): one trunk configuration at a time, a margin fixed
before the data, paired intervals with the right degrees of freedom, nothing dropped silently,
Frankle & Carbin's rule everywhere, saturation at either bound, multiplicity, a test across
methods with its power, and tables a paper can print. Synthetic tidy tables shaped like
`analysis.query.load_sweep`'s, fed to the project's own functions."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lth_sweep.analysis import paper_table
from lth_sweep.analysis.multiplicity import holm_sequences
from lth_sweep.analysis.noninferiority import paired_difference
from lth_sweep.analysis.power import across_methods, detectable_difference, power_two_sample, seeds_needed
from lth_sweep.analysis.sweep_verdicts import judge
from lth_sweep.analysis.sweep_verdicts_render import render

SPARSITY = {1: 0.5, 2: 0.75, 3: 0.875, 4: 0.9375}


def table(value, dense, seeds=(0, 1, 2), labels=("imp",), configs=("conv4",), metric="test/acc", rounds=SPARSITY, **extra):
    """One row per (config, label, seed, round): `value(config, label, seed, round)`, `dense(config, seed)`;
    `extra[column](config, label, seed, round)` adds columns."""
    rows = []
    for config in configs:
        for label in labels:
            for seed in seeds:
                for rnd in rounds:
                    row = {"label": label, "method": label, "seed": seed, "trunk": f"{config}-{seed}", "round": rnd,
                           "sparsity": SPARSITY[rnd], "trunk.model.name": config, "trunk.data.name": "shapes",
                           metric: value(config, label, seed, rnd), f"dense/{metric}": dense(config, seed)}
                    row |= {column: make(config, label, seed, rnd) for column, make in extra.items()}
                    rows.append(row)
    return pd.DataFrame(rows)


def rows_of(result, metric="test/acc"):
    return {(r["config"], r["method"]): r for r in result["metrics"][metric]}


# 1. configurations are not seeds ------------------------------------------------------------------

def test_architectures_are_judged_apart_not_pooled_as_seeds():
    base = {"conv2": 0.80, "conv4": 0.86, "conv6": 0.92}
    noise = {0: 0.002, 1: -0.001, 2: 0.0, 3: -0.002, 4: 0.001}
    result = judge(table(lambda c, l, s, r: base[c] + noise[s] - 0.02 * r, lambda c, s: base[c] + noise[s],
                         seeds=tuple(noise), configs=tuple(base)), ["test/acc"])
    assert [c["config"] for c in result["configurations"]] == ["model.name=conv2", "model.name=conv4", "model.name=conv6"]
    for config in result["configurations"]:
        row = config["metrics"]["test/acc"]["rows"][0]
        assert row["seeds"] == 5 and row["ticket_round"] is None  # 2 points a round: no ticket in any
        assert config["metrics"]["test/acc"]["floors"][0]["trunks"] == 5  # the floor of its own 5 seeds
    text = render(result)
    assert text.count("=== configuration model.name=") == 3


# 2. the margin is fixed before the data -------------------------------------------------------------

def fgsm(images: int, seeds=(0, 1, 2)):
    """FGSM accuracy losing 2 points a round, per-seed jitter, sampling errors of `images` images."""
    jitter = {0: 0.004, 1: -0.003, 2: 0.001, 3: -0.002, 4: 0.0}
    se = math.sqrt(0.5 * 0.5 / images)
    return table(lambda c, l, s, r: 0.5 + jitter[s] - 0.02 * r, lambda c, s: 0.5 + jitter[s] / 2, seeds=seeds,
                 metric="adv/fgsm_acc", **{"se/adv/fgsm_acc": lambda *_: se, "dense/se/adv/fgsm_acc": lambda *_: se,
                                           "se_diff/adv/fgsm_acc": lambda *_: se})


def test_the_margin_does_not_grow_with_the_noise():
    for images in (64, 200, 1000):
        result = judge(fgsm(images), ["adv/fgsm_acc"])
        block = result["configurations"][0]["metrics"]["adv/fgsm_acc"]
        assert block["margin"] == {"value": 0.01, "source": "registry default"}
        # loses 0.02 - 0.0005 on round 1 already: never a ticket, whatever the sample size
        assert block["rows"][0]["ticket_round"] is None
        assert "margin 0.01, registry default" in render(result)


def test_fewer_images_or_fewer_seeds_never_give_a_sparser_ticket():
    def sparsest(frame, key):
        row = judge(frame, ["adv/fgsm_acc"])["metrics"]["adv/fgsm_acc"][0]
        return -1 if row[key] is None else row[key]

    gentle = lambda images, seeds: fgsm(images, seeds).assign(  # noqa: E731
        **{"adv/fgsm_acc": lambda f: f["dense/adv/fgsm_acc"] - 0.003 * f["round"] + 0.001 * f["seed"]})
    for key in ("ticket_sparsity", "confident_sparsity"):
        by_images = [sparsest(gentle(n, (0, 1, 2, 3, 4)), key) for n in (64, 200, 1000, 10000)]
        assert by_images == sorted(by_images), (key, by_images)
        by_seeds = [sparsest(gentle(1000, tuple(range(k))), key) for k in (3, 4, 5)]
        assert key == "ticket_sparsity" or by_seeds == sorted(by_seeds), (key, by_seeds)


def test_a_user_margin_is_used_and_named():
    result = judge(fgsm(1000), ["adv/fgsm_acc"], margin={"adv/fgsm_acc": 0.05})
    block = result["configurations"][0]["metrics"]["adv/fgsm_acc"]
    assert block["margin"]["source"] == "user (--margin)" and block["rows"][0]["ticket_round"] == 2


# 3. paired intervals ----------------------------------------------------------------------------------

def test_the_interval_is_paired_with_welch_satterthwaite_df_and_p_agrees_with_it():
    rng = np.random.default_rng(0)
    n_images, seeds = 10_000, 3
    dense_correct = rng.random((seeds, n_images)) < 0.9
    flips = rng.random((seeds, n_images)) < 0.01  # the sparse network disagrees with its trunk on 1% of images
    sparse_correct = np.where(flips, ~dense_correct, dense_correct)
    d_images = sparse_correct.astype(float) - dense_correct.astype(float)
    per_seed = d_images.mean(1)
    mcnemar_se = d_images.std(1, ddof=1) / math.sqrt(n_images)  # discordant pairs only
    got = paired_difference(per_seed, mcnemar_se, margin=0.005)
    seeds_var = per_seed.var(ddof=1) / seeds
    sampling_var = float(np.mean(mcnemar_se**2))
    df = (seeds_var + sampling_var) ** 2 / (seeds_var**2 / (seeds - 1))
    se = math.sqrt(seeds_var + sampling_var)
    assert got.se == pytest.approx(se) and got.df == pytest.approx(df)
    assert got.low == pytest.approx(per_seed.mean() - stats.t.ppf(0.95, df) * se)
    assert got.p_value == pytest.approx(stats.t.sf((per_seed.mean() + 0.005) / se, df))
    # the unpaired error of the old intervals is several times larger
    unpaired = np.hypot(np.sqrt(0.9 * 0.1 / n_images), np.sqrt(0.9 * 0.1 / n_images))
    assert unpaired > 3 * mcnemar_se.mean()
    # p below 5% exactly when the interval's lower end clears -margin
    for margin in (0.0, 0.001, 0.003, 0.01):
        test = paired_difference(per_seed, mcnemar_se, margin)
        assert (test.p_value < 0.05) == (test.low > -margin)


# 4. nothing dropped silently --------------------------------------------------------------------------

def test_a_collapsed_seed_fails_the_round_and_a_missing_one_leaves_it_undetermined():
    frame = table(lambda c, l, s, r: 0.01, lambda c, s: 0.01, metric="flat/radius")
    frame.loc[(frame["seed"] > 0) & (frame["round"] == 2), "flat/radius"] = math.nan
    frame.loc[(frame["seed"] > 0) & (frame["round"] == 2), "nonfinite/flat/radius"] = 1.0
    row = judge(frame, ["flat/radius"])["metrics"]["flat/radius"][0]
    assert row["ticket_round"] == 1 and row["stopped"]["status"] == "fails" and "collapsed" in row["stopped"]["reason"]

    missing = table(lambda c, l, s, r: 0.9, lambda c, s: 0.9 + 0.001 * s)
    missing = missing[~((missing["seed"] == 2) & (missing["round"] >= 3))]  # seed 2 has not reached round 3
    row = judge(missing, ["test/acc"])["metrics"]["test/acc"][0]
    assert row["ticket_round"] == 2 and row["stopped"] == {"round": 3, "status": "undetermined", "reason": "seed(s) 2 not measured"}
    assert [r["n"] for r in row["rounds"]] == [3, 3, 0, 0]


def early_stopping_table(sparse_iteration, saturated=lambda *_: 0.0):
    return table(
        lambda c, l, s, r: 0.9 + 0.001 * s, lambda c, s: 0.9 + 0.001 * s, metric="test/acc",
        **{"train/early_stop_acc": lambda c, l, s, r: 0.9 + 0.001 * s - 0.001 * r,
           "dense/train/early_stop_acc": lambda c, l, s, r: 0.9 + 0.001 * s,
           "train/early_stop_iteration": sparse_iteration,
           "dense/train/early_stop_iteration": lambda *_: 1000.0,
           "train/early_stop_saturated": saturated, "dense/train/early_stop_saturated": lambda *_: 0.0,
           "train/early_stop_every": lambda *_: 100.0},
    )


def test_saturated_early_stopping_is_undetermined_not_dropped():
    frame = early_stopping_table(lambda c, l, s, r: 900.0 if s == 0 else math.nan,
                                 saturated=lambda c, l, s, r: 0.0 if s == 0 else 1.0)
    row = judge(frame, [])["winning"][0]
    assert row["ticket_round"] is None and row["stopped"]["status"] == "undetermined"
    assert "seed(s) 1, 2 saturated" in row["stopped"]["reason"]


# 5. Frankle & Carbin's rule, the same everywhere -----------------------------------------------------

def test_the_winning_ticket_needs_accuracy_at_early_stopping_and_speed():
    # 1.5x slower than dense from round 2: the ticket stops at round 1, and LTH-PASS agrees
    frame = early_stopping_table(lambda c, l, s, r: 1000.0 if r == 1 else 1500.0 + 10 * s)
    result = judge(frame, ["test/acc"])
    winning = result["winning"][0]
    assert winning["ticket_round"] == 1 and winning["stopped"]["reason"] == "slower than dense"
    assert result["lth_pass"]["shapes/conv4"]["imp"]["sparsities"] == [0.5]
    assert rows_of(result)[("shapes/conv4", "imp")]["ticket_round"] == 4  # final accuracy alone would say round 4
    # within one evaluation interval counts as no slower
    assert judge(early_stopping_table(lambda c, l, s, r: 1100.0), [])["winning"][0]["ticket_round"] == 4


# 6. saturation at either bound ------------------------------------------------------------------------

def test_a_metric_at_its_worse_bound_for_every_network_gets_no_verdict():
    result = judge(table(lambda *_: 0.0, lambda *_: 0.0, metric="adv/fgsm_acc"), ["adv/fgsm_acc"])
    assert result["configurations"][0]["saturated"] == ["adv/fgsm_acc"] and "adv/fgsm_acc" not in result["metrics"]
    # one round at the bound for everyone: that round is undetermined
    frame = table(lambda c, l, s, r: 0.0 if r == 3 else 0.3, lambda c, s: 0.3, metric="adv/fgsm_acc")
    frame.loc[frame["round"] == 3, "dense/adv/fgsm_acc"] = 0.0
    row = judge(frame, ["adv/fgsm_acc"])["metrics"]["adv/fgsm_acc"][0]
    assert row["ticket_round"] == 2 and row["stopped"]["status"] == "undetermined" and "saturated" in row["stopped"]["reason"]


# 7. multiplicity --------------------------------------------------------------------------------------

def test_holm_across_a_method_s_metrics():
    # one round each: exactly Holm's step-down
    levels = holm_sequences({"a": [0.010], "b": [0.020], "c": [0.040]}, 0.05)
    assert levels["a"][0] == 1 and levels["b"][0] == 1 and levels["c"][0] == 1  # 0.01<0.05/3, 0.02<0.025, 0.04<0.05
    assert holm_sequences({"a": [0.010], "b": [0.030], "c": [0.040]}, 0.05)["b"][0] == 0
    # a metric's level passes on only when its whole sequence is claimed
    levels = holm_sequences({"a": [0.001, 0.001], "b": [0.02, 0.03]}, 0.05)
    assert levels["a"] == (2, 0.025) and levels["b"] == (2, 0.05)
    assert holm_sequences({"a": [0.001, 0.9], "b": [0.02, 0.03]}, 0.05)["b"] == (1, 0.025)


def test_confidence_is_claimed_at_the_holm_level_and_the_heading_says_so():
    frame = early_stopping_table(lambda *_: 1000.0)
    result = judge(frame, ["test/acc"])
    row = rows_of(result)[("shapes/conv4", "imp")]
    assert row["family"] == 2 and row["level"] == pytest.approx(0.025)
    assert "Holm's procedure gives each of a method's 2 claims" in render(result)


# 8. a test across methods and its power --------------------------------------------------------------

def test_the_test_across_methods_has_the_power_of_an_anova():
    rng = np.random.default_rng(1)
    means, seeds, trials = (0.0, 1.0, 0.0), 10, 400
    detected = sum(
        across_methods({m: rng.normal(mu, 1, seeds) for m, mu in zip("abc", means)}, 0.5).p_value < 0.05 for _ in range(trials)
    )
    # the noncentral F's power for this design (a real test, not an effect-size threshold)
    noncentrality = seeds * sum((mu - np.mean(means)) ** 2 for mu in means)
    critical = stats.f.ppf(0.95, 2, 3 * (seeds - 1))
    expected = stats.ncf.sf(critical, 2, 3 * (seeds - 1), noncentrality)
    assert abs(detected / trials - expected) < 4 * math.sqrt(expected * (1 - expected) / trials)
    assert across_methods({"a": [0.1], "b": [0.2]}, 0.5).why_not.startswith("one seed per method")
    # the power statement agrees with the noncentral t it is defined by, and with the textbook 17 seeds at d = 1
    assert power_two_sample(detectable_difference(1.0, 5), 1.0, 5) == pytest.approx(0.8, abs=1e-6)
    assert seeds_needed(1.0, 1.0) == 17
    needed = seeds_needed(0.2, 1.0)  # the least n with 80% power, found far from where the scan starts
    assert power_two_sample(0.2, 1.0, needed) >= 0.8 > power_two_sample(0.2, 1.0, needed - 1)
    assert power_two_sample(1.0, 1.0, 1000) == 1.0 and seeds_needed(0.05, 1.0) is None  # the tail; beyond 1000 seeds


def test_tickets_print_the_methods_test_and_what_it_can_detect():
    frame = table(lambda c, l, s, r: 0.9 - (0.02 * r if l == "random" else 0.0) + 0.001 * s, lambda c, s: 0.9,
                  labels=("imp", "random"))
    result = judge(frame, ["test/acc"])
    test = result["configurations"][0]["metrics"]["test/acc"]["methods_test"]
    assert test["sparsity"] == 0.9375 and test["methods"] == 2 and test["seeds"] == 3
    assert "methods compared at 93.8%" in render(result)


# 11. a table a paper can print ------------------------------------------------------------------------

def test_markdown_latex_and_csv_tables_per_configuration():
    frame = table(lambda c, l, s, r: 0.9 - 0.001 * r + 0.002 * s, lambda c, s: 0.9 + 0.002 * s, configs=("conv2", "conv4"))
    result = judge(frame, ["test/acc"])
    text = paper_table.markdown(result)
    assert text.count("| dense (reference) |") == 4  # the winning rule's and test/acc's table, per configuration
    assert "**model.name=conv2: test/acc**" in text and "±" in text and "(3)" in text
    assert "**0.8980 ± 0.0020 (3)**" in text  # the ticket's cell, round 4 (93.8%), in bold
    assert "No ticket" not in text
    failing = paper_table.markdown(judge(frame[frame["seed"] != 2].assign(**{"test/acc": lambda f: f["test/acc"] - 0.1}), []))
    assert "No ticket: imp (r1 fails)." in failing
    assert r"\textbf{" in paper_table.latex(result) and r"$\pm$" in paper_table.latex(result)
    long = paper_table.long_form(result)
    assert set(long["config"]) == {"model.name=conv2", "model.name=conv4"} and long["ticket"].sum() == 4


# 10. every printed number carries its noise ---------------------------------------------------------

def test_a_reference_that_is_one_by_construction_is_not_called_seeds_that_agree():
    from lth_sweep.analysis.noise_floor import floor

    frame = table(lambda c, l, s, r: 1.0 + 0.05 * r + 0.01 * s, lambda c, s: 1.0, metric="corrupt/mce")
    assert floor(frame, "corrupt/mce").source == "not measured: every trunk scores exactly 1 (by construction or ties)"
    assert "agree" not in render(judge(frame, ["corrupt/mce"]))


def test_the_dry_run_states_what_the_planned_seeds_can_detect_from_a_finished_sweep():
    from lth_sweep.orchestrator.power_plan import pooled_noise, power_lines

    jitter = {0: 0.01, 1: -0.01, 2: 0.0}
    finished = judge(table(lambda c, l, s, r: 0.9 - (0.02 * r if l == "random" else 0.0) + jitter[s] * (l == "imp"),
                           lambda c, s: 0.9, labels=("imp", "random"), configs=("conv2", "conv4")), ["test/acc"])
    sigma, margin = pooled_noise(finished)["test/acc"]
    assert sigma == pytest.approx(math.sqrt(0.0001 / 2)) and margin == 0.005  # imp's spread, pooled with random's none
    lines = power_lines(5, finished, "old")
    assert lines[0].startswith("power with 5 seed(s) per method") and "detects" in lines[1]
    assert f"{detectable_difference(sigma, 5):.3g}" in lines[1] and f"needs {seeds_needed(0.005, sigma)} seeds" in lines[1]


def test_the_summary_s_noise_floor_is_per_configuration():
    from lth_sweep.orchestrator.summary import noise_floor_lines

    def row(config, seed, dense_acc):
        return {"name": f"{config} imp s{seed}", "config": config, "trunk": f"{config}-{seed}", "dense_acc": dense_acc,
                "gradcam_rho": math.nan, "floor_gradcam_rho": math.nan, "concepts_j": math.nan, "floor_concepts_j": math.nan}

    rows = [row("model.name=conv2", 0, 0.80), row("model.name=conv2", 1, 0.82), row("model.name=conv6", 0, 0.92), row("model.name=conv6", 1, 0.92)]
    text = "\n".join(noise_floor_lines(rows))
    assert "noise floor in model.name=conv2, what dense networks differing from the trunk only in their seed or data order score: dense acc 0.8100 +- 0.0141 (std over 2 seeds)" in text
    assert "dense acc 0.9200 +- 0.0000 (std over 2 seeds)" in text and "4 seeds" not in text


def test_two_seeds_never_give_confidence_not_even_through_holm():
    result = judge(table(lambda c, l, s, r: 0.9 + 0.0012 * s + 0.0005 * r, lambda c, s: 0.9 + 0.001 * s, seeds=(0, 1)), ["test/acc"])
    row = result["metrics"]["test/acc"][0]
    assert row["ticket_round"] == 4 and row["confident_round"] is None
    assert row["not_confident_because"] == "2 seed(s): confidence needs 3+"


def test_a_flatness_round_without_a_sampling_error_says_which_option_measures_it():
    from lth_sweep.analysis.round_evidence import evidence, reference_for

    def radius(config, label, seed, rnd):
        return 0.3 - 0.01 * rnd + 0.001 * seed

    frame = table(radius, lambda config, seed: 0.3, metric="flat/radius")
    group = frame[frame["round"] == 1]
    judged = evidence(group, "flat/radius", [0, 1, 2], reference_for(frame, "flat/radius"), 0.03, True, 1, 0.5)
    assert judged.sampling_note == "no sampling error logged (analysis.flatness.bootstrap_draws measures one)"
    frame["se_diff/flat/radius"] = 0.01
    judged = evidence(frame[frame["round"] == 1], "flat/radius", [0, 1, 2], reference_for(frame, "flat/radius"),
                      0.03, True, 1, 0.5)
    assert judged.sampling_note == "" and judged.difference.sampling_se == pytest.approx(0.01)
