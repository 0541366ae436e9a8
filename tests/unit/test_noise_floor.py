"""The metric registry, the noise floor and the verdicts `lth tickets` draws from them, on tidy
tables shaped like `analysis.query.load_sweep`'s."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from lth_sweep.analysis import metrics as registry
from lth_sweep.analysis.noise_floor import floor, margin
from lth_sweep.analysis.sweep_verdicts import judge
from lth_sweep.analysis.sweep_verdicts_render import render

SPARSITY = {1: 0.5, 2: 0.75, 3: 0.875}


def sweep_table(seeds=(0, 1, 2), **per_metric) -> pd.DataFrame:
    """One row per (label, seed, round); `per_metric[name] = (dense_by_seed, value(label, seed, round))`."""
    rows = []
    for label in ("imp", "random"):
        for seed in seeds:
            for rnd, sparsity in SPARSITY.items():
                row = {"label": label, "method": label, "seed": seed, "trunk": f"t{seed}", "round": rnd, "sparsity": sparsity}
                for metric, (dense, value) in per_metric.items():
                    row[metric] = value(label, seed, rnd)
                    if dense is not None:
                        row[f"dense/{metric}"] = dense(seed)
                rows.append(row)
    return pd.DataFrame(rows)


def test_a_consistency_floor_is_what_a_second_dense_seed_scores():
    frame = sweep_table(**{"xai/gradcam_rank_corr": (None, lambda label, seed, rnd: 0.9 - 0.1 * rnd)})
    frame["dense/floor/xai/gradcam_rank_corr"] = frame["seed"].map({0: 0.70, 1: 0.80, 2: 0.75})
    measured = floor(frame, "xai/gradcam_rank_corr")
    assert measured.value == pytest.approx(0.25) and measured.trunks == 3 and measured.spread == (0.70, 0.80)
    assert "from 3 pairs of seeds" in measured.source
    result = judge(frame, ["xai/gradcam_rank_corr"])
    block = result["configurations"][0]["metrics"]["xai/gradcam_rank_corr"]
    assert block["margin"] == {"value": 0.05, "source": "registry default"}  # fixed, not the floor
    assert block["reference"].startswith("another seed's trunk's agreement")
    imp = {r["method"]: r for r in block["rows"]}["imp"]
    # 0.8, 0.7, 0.6 against what a second dense seed scores (0.75 on average): +0.05, -0.05, -0.15
    assert imp["drift_in_floors"] == [-0.2, 0.2, 0.6]
    assert imp["ticket_round"] == 2 and imp["stopped"]["round"] == 3


def test_a_dense_floor_is_the_seeds_spread_plus_the_sampling_error():
    dense = {0: 0.90, 1: 0.92, 2: 0.94}
    frame = sweep_table(**{"test/acc": (dense.get, lambda label, seed, rnd: dense[seed] - 0.01 * rnd)})
    assert floor(frame, "test/acc").value == pytest.approx(0.02)  # std of 0.90, 0.92, 0.94
    frame["dense/se/test/acc"] = 0.015
    assert floor(frame, "test/acc").value == pytest.approx(0.025)  # sqrt(0.02^2 + 0.015^2)
    assert "sampling error" in floor(frame, "test/acc").source


def test_without_a_floor_each_metric_has_its_own_scale_of_tolerance():
    one_seed = sweep_table(
        seeds=(0,),
        **{
            "test/acc": (lambda s: 0.9, lambda *_: 0.9),
            "flat/hessian_weights": (lambda s: 40.0, lambda *_: 41.0),
            "xai/lime_fidelity": (lambda s: 1e-4, lambda *_: 1.1e-4),
        },
    )
    result = judge(one_seed, ["test/acc", "flat/hessian_weights", "xai/lime_fidelity"])
    margins = {metric: block["margin"] for metric, block in result["configurations"][0]["metrics"].items()}
    assert {m: v["value"] for m, v in margins.items()} == {
        "test/acc": 0.005, "flat/hessian_weights": pytest.approx(4.0), "xai/lime_fidelity": pytest.approx(2e-5)}
    assert margins["flat/hessian_weights"]["source"] == "registry default, 0.1 x |dense|"
    # A Hessian eigenvalue 1 above 40 is within 10% of dense; an absolute 0.005 would have failed it.
    assert {r["method"]: r["ticket_round"] for r in result["metrics"]["flat/hessian_weights"]} == {"imp": 3, "random": 3}
    assert margin("test/acc", 0.9, override=0.02).source == "user (--margin)"


def test_a_saturated_metric_gets_no_verdict():
    frame = sweep_table(**{"test/acc": (lambda s: 1.0, lambda *_: 1.0), "calib/ece": (lambda s: 0.02, lambda *_: 0.03)})
    result = judge(frame, ["test/acc", "calib/ece"])
    assert result["configurations"][0]["saturated"] == ["test/acc"] and "test/acc" not in result["metrics"]
    assert "saturated (every network at a bound of the metric" in render(result)


def test_three_seeds_with_spread_can_be_confident_two_cannot():
    def value(label, seed, rnd):
        return 0.9 + 0.006 * seed + (0.0 if label == "imp" else -0.05 * rnd)

    # imp's paired differences 0, 0.001, 0.002 against the margin 0.005: p far below its Holm level
    three = judge(sweep_table(**{"test/acc": (lambda s: 0.9 + 0.005 * s, value)}), ["test/acc"])
    imp = {r["method"]: r for r in three["metrics"]["test/acc"]}["imp"]
    assert imp["confident_sparsity"] == 0.875 and imp["not_confident_because"] is None
    two = judge(sweep_table(seeds=(0, 1), **{"test/acc": (lambda s: 0.9 + 0.005 * s, value)}), ["test/acc"])
    for row in two["metrics"]["test/acc"]:
        assert row["confident_sparsity"] is None and row["not_confident_because"] == "2 seed(s): confidence needs 3+"
    assert "no confidence claimed: 2 seed(s): confidence needs 3+" in render(two)


def test_the_registry_follows_a_parameter_into_the_metric_name():
    columns = ["test/acc", "xai/gradcam_iou_top20", "xai/concept_jaccard_top5", "xai/gradcam_rank_corr/class/red",
               "dense/xai/gradcam_iou_top20", "se/xai/gradcam_iou_top20", "floor/xai/concept_jaccard_top5"]
    assert registry.in_figure("gradcam", columns) == ["xai/gradcam_iou_top20"]
    assert registry.in_figure("concepts", columns) == ["xai/concept_jaccard_top5"]
    assert registry.is_consistency("xai/concept_jaccard_top5") and not registry.is_consistency("xai/concept_recovery")
    assert registry.lookup("xai/gradcam_rank_corr/class/red").pattern == "xai/gradcam_rank_corr"
    assert registry.higher_is_better("flat/radius") and not registry.higher_is_better("calib/ece")
    with pytest.raises(registry.UnknownMetric):
        registry.lookup("xai/unknown")
    assert math.isnan(floor(sweep_table(seeds=(0,), **{"test/acc": (lambda s: 0.9, lambda *_: 0.9)}), "test/acc").value)


def test_the_summary_says_what_a_second_dense_seed_scores_and_who_moved_further():
    from lth_sweep.orchestrator.summary import noise_floor_lines

    def row(name, trunk, dense_acc, rho, floor_rho):
        return {"name": name, "trunk": trunk, "dense_acc": dense_acc, "gradcam_rho": rho, "floor_gradcam_rho": floor_rho,
                "concepts_j": 0.9, "floor_concepts_j": math.nan}

    rows = [row("imp s0", "t0", 0.99, 0.70, 0.60), row("random s0", "t0", 0.99, 0.30, 0.60), row("imp s1", "t1", 0.97, 0.65, 0.64)]
    text = "\n".join(noise_floor_lines(rows))
    assert "dense acc 0.9800 +- 0.0141 (std over 2 seeds)" in text and "Grad-CAM rho 0.60-0.64" in text
    assert "Grad-CAM rho: random s0." in text and "concepts J@3" not in text
    one_seed = [row("imp s0", "t0", 0.99, 0.7, math.nan)]
    assert "not measured (one seed" in "\n".join(noise_floor_lines(one_seed))


def test_a_near_perfect_floor_from_one_pair_does_not_change_the_margin():
    frame = sweep_table(seeds=(0, 1), **{"xai/concept_jaccard_top3": (None, lambda label, seed, rnd: 0.95)})
    frame["dense/floor/xai/concept_jaccard_top3"] = 0.98  # one pair of dense seeds that happened to nearly agree
    result = judge(frame, ["xai/concept_jaccard_top*"])
    assert list(result["metrics"]) == ["xai/concept_jaccard_top3"]  # the registry pattern, resolved
    block = result["configurations"][0]["metrics"]["xai/concept_jaccard_top3"]
    assert block["margin"] == {"value": pytest.approx(0.05), "source": "registry default"}
    assert block["floors"][0]["source"] == "another seed's trunk, from 1 pair of seeds"  # 2 seeds: one pair, measured twice
    assert {r["method"]: r["ticket_round"] for r in block["rows"]} == {"imp": 3, "random": 3}


def test_the_dense_twin_is_the_consistency_reference_and_another_seed_the_second_line():
    frame = sweep_table(**{"xai/gradcam_rank_corr": (None, lambda label, seed, rnd: 0.9 - 0.1 * rnd)})
    frame["dense/twin/xai/gradcam_rank_corr"] = 0.85
    frame["dense/floor/xai/gradcam_rank_corr"] = 0.25
    block = judge(frame, ["xai/gradcam_rank_corr"])["configurations"][0]["metrics"]["xai/gradcam_rank_corr"]
    assert block["reference"].startswith("the dense twin's agreement")
    assert [f["source"] for f in block["floors"]] == [
        "dense twin (same init, other data order) of 3 trunk(s)", "another seed's trunk, from 3 pairs of seeds"]
    # against the twin (0.85) the drift of 0.8, 0.7 is -0.05, -0.15; against another seed (0.25) everything would pass
    assert {r["method"]: r["ticket_round"] for r in block["rows"]} == {"imp": 1, "random": 1}
    assert "second floor 0.75 (another seed's trunk" in render(judge(frame, ["xai/gradcam_rank_corr"]))


def test_the_summary_names_the_winning_ticket_and_the_drift_columns_methods_cannot_be_told_apart_on():
    from lth_sweep.orchestrator.summary import indistinct_columns, render, render_markdown

    def noisy(label, seed, rnd):
        return 0.4 + 0.1 * ((seed + rnd) % 2) + (0.01 if label == "imp" else 0.0)

    frame = sweep_table(**{"xai/gradcam_energy_in_object": (lambda s: 0.45, noisy),
                           "xai/gradcam_rank_corr": (None, lambda l, s, r: 0.9 - 0.3 * (l == "random") + 0.01 * s)})
    indistinct = indistinct_columns(judge(frame, ["xai/gradcam_energy_in_object", "xai/gradcam_rank_corr"]))
    assert set(indistinct) == {"on_object"} and indistinct["on_object"].startswith("the methods do not differ detectably")
    row = {"name": "imp s0", "trunk": "t0", "rounds": "3/3", "sparsity": 0.875, "dense_acc": 0.9, "last_acc": 0.9,
           "delta_vs_dense": 0.0, "winning": "r1 50.0%", "winning_round": 1, "winning_sparsity": 0.5, "status": "FINISHED",
           "stopped": "", "gradcam_rho": 0.8, "on_object": 0.4, "dense_on_object": 0.45, "concepts_j": 0.9, "true_concepts": 1.0,
           "dense_true_concepts": 1.0}
    text = render([row], indistinct=indistinct)
    assert "on object: the methods do not differ detectably" in text and "Grad-CAM rho: the methods" not in text
    markdown = render_markdown([row, {**row, "name": "random s0", "gradcam_rho": math.nan, "status": "FAILED"}], indistinct)
    table, *paragraphs = markdown.split("\n\n")
    table = table.replace("\u00a0", "")  # the cells' padding (MLflow's description styles none)
    assert table.splitlines()[:2] == [
        "| lineage | rounds | sparsity | dense acc | last acc | vs dense | winning ticket | Grad-CAM rho | on object"
        " | concepts J@3 | true concepts |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    assert table.splitlines()[2] == "| imp s0 | 3/3 | 87.5% | 0.9000 | 0.9000 | +0.0000 | r1 50.0% | 0.800 | 0.45 -> 0.40 | 0.90 | 1.00 -> 1.00 |"
    assert table.splitlines()[3].startswith("| random s0 (FAILED) |") and "| - |" in table.splitlines()[3]
    assert paragraphs[0].startswith("Grad-CAM rho: rank correlation") and "\n" not in paragraphs[0]  # one paragraph
    assert paragraphs[1].startswith("winning ticket: the method's")
    assert paragraphs[2].startswith("on object: the methods do not differ detectably")


def test_the_summary_reads_drift_against_the_trunk_s_twin_first():
    from lth_sweep.orchestrator.summary import noise_floor_lines

    def row(name, trunk, rho, twin, other):
        return {"name": name, "trunk": trunk, "dense_acc": 0.9, "gradcam_rho": rho, "twin_gradcam_rho": twin,
                "floor_gradcam_rho": other, "concepts_j": math.nan, "floor_concepts_j": math.nan}

    rows = [row("imp s0", "t0", 0.50, 0.60, 0.25), row("imp s1", "t1", 0.30, 0.40, 0.25)]
    text = "\n".join(noise_floor_lines(rows))
    assert "Grad-CAM rho 0.40-0.60 for the dense twin; Grad-CAM rho 0.25 for another seed's trunk (from 1 pair of seeds)" in text
    # each lineage against its own trunk's twin: 0.50 < 0.60 - 0.05 moved; 0.30 < 0.40 - 0.05 moved; against 0.25 neither would
    assert "moved further from their trunk than their trunk's dense twin (by more than the metric's margin), at the last round: Grad-CAM rho: imp s0, imp s1." in text
