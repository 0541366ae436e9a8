"""Pruning entries that would share a label get distinct ones: verdicts, tables and colours group
lineages by label, and two entries under one label would be pooled round by round as seeds."""
from __future__ import annotations

import pandas as pd
import pytest

from lth_sweep.analysis.sweep_verdicts import PooledLineages, judge
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.config_errors import ConfigError
from lth_sweep.orchestrator.plan import make_plan
from lth_sweep.trainables.specs import LineageSpec

BASE = """name: labels
seeds: [0, 1]
data: {name: digits, image_size: 8}
model: {name: lenet_300_100, width: 30}
train: {epochs: 1}
analysis: {enabled: false, twin: false}
"""


def plan_of(tmp_path, pruning: str):
    (tmp_path / "sweep.yaml").write_text(BASE + pruning)
    return make_plan(load_config(tmp_path / "sweep.yaml"), check_paths=False)


def test_entries_differing_in_rate_get_labels_that_say_so_and_keep_their_ids(tmp_path):
    plan = plan_of(tmp_path, "pruning:\n  - {method: imp, rate: 0.2, rounds: 3}\n  - {method: imp, rate: 0.5, rounds: 2}\n"
                             "  - {method: omp, rate: 0.5}\n")
    labels = {spec.pruning.label for spec in plan.lineages}
    assert labels == {"imp rate=0.2,rounds=3", "imp rate=0.5,rounds=2", "omp"}
    for spec in plan.lineages:  # a label is no part of the identity: the same ids as unnamed
        unnamed = LineageSpec.model_validate(spec.model_dump(mode="json") | {
            "pruning": spec.pruning.model_dump(mode="json") | {"name": None}})
        assert unnamed.id == spec.id and unnamed.pruning.label == spec.pruning.default_label


def test_labels_that_do_not_collide_are_left_alone(tmp_path):
    plan = plan_of(tmp_path, "pruning:\n  - {method: imp, rate: 0.5}\n  - {method: imp, rate: 0.5, rewind: 5}\n"
                             "  - {method: imp, rate: 0.5, reinit: true}\n")
    assert {spec.pruning.label for spec in plan.lineages} == {"imp", "imp@5", "imp+reinit"}


def test_user_names_are_labels_and_must_not_collide(tmp_path):
    plan = plan_of(tmp_path, "pruning:\n  - {method: imp, rate: 0.2, name: slow}\n  - {method: imp, rate: 0.5, name: fast}\n")
    assert {spec.pruning.label for spec in plan.lineages} == {"slow", "fast"}
    with pytest.raises(ConfigError, match="share the label 'same' but differ in rate: give each its own `name`"):
        plan_of(tmp_path, "pruning:\n  - {method: imp, rate: 0.2, name: same}\n  - {method: imp, rate: 0.5, name: same}\n")


def test_two_lineages_under_one_label_and_seed_are_refused_not_pooled():
    rows = [{"lineage": lineage, "label": "imp", "method": "imp", "seed": 0, "trunk": "t0", "round": 1, "sparsity": 0.5,
             "trunk.model.name": "conv4", "test/acc": acc, "dense/test/acc": 0.9}
            for lineage, acc in (("a", 0.9), ("b", 0.5))]
    with pytest.raises(PooledLineages, match="2 lineages share the label 'imp' in configuration .* at seed 0"):
        judge(pd.DataFrame(rows), ["test/acc"])
