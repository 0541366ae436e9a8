"""The dry run's estimate of the analysis (orchestrator/estimate_analysis.py, orchestrator/estimate.py): what it counts, where the
actors measure, and which of training or analysis bounds the sweep."""
from __future__ import annotations

import re

import pytest
import torch

from lth_sweep.orchestrator import estimate_analysis
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import make_plan

QUICKSTART = "configs/quickstart.yaml"
#: The analysis' own defaults (the quickstart samples less) plus heavier flatness and robustness.
HEAVY = [
    "analysis.gradcam.images=256", "analysis.robustness.images=1000", "analysis.robustness.pgd_steps=20",
    "analysis.robustness.corruptions=[all]", "analysis.robustness.severities=[1,2,3,4,5]",
    "analysis.flatness.images=1000", "analysis.flatness.iterations=20", "analysis.lime.images=32",
]


def describe(overrides: list[str]) -> str:
    return make_plan(load_config(QUICKSTART, overrides), check_paths=False).describe()


def line(text: str, start: str) -> str:
    (found,) = [row for row in text.splitlines() if row.startswith(start)]
    return found


def test_heavy_analysis_on_one_actor_bounds_the_sweep():
    text = describe([*HEAVY, "analysis.actors=1", "train.epochs=2"])
    assert line(text, "wall time (rough): ").split("; ")[1].startswith("bound by analysis: more analysis actors")
    assert "52 measurements" in line(text, "analysis (rough): ")  # 12 lineages x 4 rounds + 2 references + 2 floors


def test_without_analysis_training_bounds_the_sweep():
    text = describe(["analysis.enabled=false"])
    assert "bound by training (analysis off)" in line(text, "wall time (rough): ")
    assert not [row for row in text.splitlines() if row.startswith("analysis (rough)")]
    assert "analysis:" not in line(text, "resources: ")


def test_the_quickstart_is_bound_by_training_and_says_where_its_actors_measure():
    text = describe([])
    assert line(text, "wall time (rough): ").split("; ")[1] == "bound by training"
    assert "analysis: 1 actor(s) x {CPU: 0}, measuring on the CPU" in line(text, "resources: ")
    analysis = line(text, "analysis (rough): ")
    assert "on CPU (1 thread)" in analysis
    # ~1.5 s a round measured here (bench/analysis_cost.py); the estimate says "~2 s" (rounded)
    assert re.search(r"~[12] s each", analysis), analysis
    assert "note: analysis.cpus_per_actor is 0: the actors share the trials' cores" in text


def test_more_actors_shorten_the_analysis_and_can_move_the_bound():
    one = describe([*HEAVY, "analysis.actors=1"])
    many = describe([*HEAVY, "analysis.actors=64", "analysis.cpus_per_actor=0.01"])
    # a lineage's rounds are measured one after another, so no number of actors beats its 5 rounds
    assert "on 64 actor(s) at a time" in line(many, "analysis (rough): ")
    assert line(many, "wall time (rough): ").split("; ")[1] == "bound by training"
    assert "bound by analysis" in line(one, "wall time (rough): ")


def test_gpu_actors_say_so_and_are_faster_on_a_large_network():
    config = load_config(QUICKSTART, ["analysis.gpus_per_actor=0.5"])
    text = make_plan(config, check_paths=False).describe()
    assert "analysis: 1 actor(s) x {CPU: 0, GPU: 0.5}, measuring on the GPU" in line(text, "resources: ")
    assert "on GPU (0.5 each)" in line(text, "analysis (rough): ")
    if not torch.cuda.is_available():
        assert "note: analysis actors asking for {CPU: 0, GPU: 0.5} never start on this machine" in text
        assert "note: trials asking" not in text  # they ask for no GPU: they start
    (trunk, _), *_ = make_plan(config, check_paths=False).trunks.values()
    cost = estimate_analysis.analysis_cost(config.analysis, trunk.data)
    macs = 300e6  # a VGG-16 at 32 px
    assert cost.seconds(macs, gpu_share=0.5) < cost.seconds(macs, threads=1) / 10
    assert cost.seconds(macs, threads=4) < cost.seconds(macs, threads=1)


@pytest.mark.parametrize(
    "override,dimension",
    [
        ("analysis.gradcam.images=512", "gradcam"),
        ("analysis.robustness.pgd_steps=10", "robustness"),
        ("analysis.flatness.iterations=16", "flatness"),
        ("analysis.lime.samples=128", "lime"),
        ("analysis.concepts.train_images=2000", "concepts"),
        ("analysis.mis.images=1000", "mis"),
    ],
)
def test_a_larger_sample_costs_more_in_its_dimension_only(override, dimension):
    base, larger = (load_config(QUICKSTART, extra) for extra in ([], [override]))
    (trunk, _), *_ = make_plan(base, check_paths=False).trunks.values()
    before = estimate_analysis.analysis_cost(base.analysis, trunk.data)
    after = estimate_analysis.analysis_cost(larger.analysis, trunk.data)
    assert after.passes[dimension] > before.passes[dimension]
    assert {k: v for k, v in after.passes.items() if k != dimension} == {k: v for k, v in before.passes.items() if k != dimension}


def test_a_disabled_dimension_costs_nothing():
    config = load_config(QUICKSTART, ["analysis.flatness.enabled=false", "analysis.lime.enabled=false"])
    (trunk, _), *_ = make_plan(config, check_paths=False).trunks.values()
    cost = estimate_analysis.analysis_cost(config.analysis, trunk.data)
    assert set(cost.passes) == {"calibration", "robustness", "gradcam", "concepts", "mis"}
