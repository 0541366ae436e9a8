"""The dense twin (trainables/twin.py), really trained on the built-in data: the trunk's init, bit
for bit, another data order; deterministic; measured against the trunk's reference as `twin/`
consistency metrics; off with `analysis.twin: false` without changing any id; priced in the dry run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lth_sweep.analysis import metrics as registry
from lth_sweep.analysis.actors import Analyzer
from lth_sweep.analysis.analysis_spec import AnalysisSpec
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import make_plan
from tests.support.tiny import tiny_trunk
from lth_sweep.trainables.training import batch_indices
from lth_sweep.trainables.record import TWIN_PREFIX
from lth_sweep.trainables.twin import train_twin, twin_recipe, twin_seed

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: tests/unit/conftest.py

QUICKSTART = "configs/quickstart.yaml"
CONSISTENCY = ["xai/gradcam_rank_corr", "xai/gradcam_iou_top10", "xai/gradcam_cosine", "xai/concept_jaccard_top3", "xai/concept_kendall_tau"]
#: Grad-CAM and concepts only, on small samples: every consistency metric, little else.
CONSISTENCY_ONLY = {
    "gradcam": {"images": 64, "grid_images": 0}, "concepts": {"train_images": 200, "eval_images": 64},
    "lime": {"enabled": False}, "mis": {"enabled": False}, "robustness": {"enabled": False},
    "flatness": {"enabled": False}, "calibration": {"enabled": False},
}


@pytest.fixture(scope="module")
def twin(one_thread):
    return train_twin(tiny_trunk())


def states_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)


def test_the_twin_starts_from_the_trunk_s_init_bit_for_bit_and_ends_elsewhere(trained_trunk, twin):
    assert states_equal(twin.init, trained_trunk.init)  # the same torch.manual_seed(spec.seed) draw
    assert not states_equal(twin.final, trained_trunk.final)
    assert twin.spec == trained_trunk.spec and twin.total_iterations == trained_trunk.total_iterations  # same recipe
    assert twin.metrics["test/acc"] > 1 / 9  # it learned something (9 classes)


def test_the_twin_sees_the_same_examples_in_another_order():
    spec = tiny_trunk()
    size, batch = spec.data.train_size, spec.train.batch_size
    trunk_epoch = torch.cat([batch_indices(size, batch, spec.seed, i) for i in range(spec.total_iterations())])
    twin_epoch = torch.cat([batch_indices(size, batch, twin_seed(spec.seed), i) for i in range(spec.total_iterations())])
    assert not torch.equal(trunk_epoch, twin_epoch)
    assert torch.equal(trunk_epoch.sort().values, twin_epoch.sort().values)  # one epoch: every example once, in both
    assert twin_seed(0) != twin_seed(1) and twin_seed(0) not in (0, 1)  # not another seed's trunk's order either


def test_the_twin_is_deterministic(twin):
    again = train_twin(tiny_trunk())
    assert states_equal(again.final, twin.final)
    assert again.metrics == twin.metrics


def test_a_cuda_trunk_s_twin_trains_where_its_task_is_given_a_device():
    cuda = tiny_trunk(device="cuda")
    assert twin_recipe(cuda).train.device == "auto" and twin_recipe(cuda).id == cuda.id  # device: not identity
    assert twin_recipe(tiny_trunk()) == tiny_trunk()


def test_the_twin_is_measured_against_the_trunk_s_reference_on_every_consistency_metric(trained_trunk, twin):
    analyzer = Analyzer(AnalysisSpec.model_validate(CONSISTENCY_ONLY))
    _, reference, _ = analyzer.reference(trained_trunk.spec, trained_trunk.final)
    measured = analyzer.twin(twin, reference)
    consistency = [name.removeprefix(TWIN_PREFIX) for name in measured if name != f"{TWIN_PREFIX}test/acc"]
    assert all(registry.is_consistency(name) for name in consistency)
    assert set(consistency) == set(CONSISTENCY)  # every consistency metric of the registry, as measured
    assert len(registry.REGISTRY) > len([m for m in registry.REGISTRY if m.reference == "consistency"]) == len(CONSISTENCY)
    assert measured[f"{TWIN_PREFIX}test/acc"] == twin.metrics["test/acc"]
    assert measured[f"{TWIN_PREFIX}xai/gradcam_rank_corr"] < 1.0  # another network: not the trunk's own 1
    itself = analyzer.twin(trained_trunk, reference)  # the trunk as its own twin scores 1 throughout
    assert all(itself[f"{TWIN_PREFIX}{name}"] == 1.0 for name in consistency)


def test_twin_off_changes_no_id():
    quickstart = make_plan(load_config(QUICKSTART))
    off = make_plan(load_config(QUICKSTART, ["analysis.twin=false"]))
    assert quickstart.config.analysis.twin and not off.config.analysis.twin
    assert off.sweep_id == quickstart.sweep_id
    assert off.config.analysis.id == quickstart.config.analysis.id
    assert [spec.id for spec in off.lineages] == [spec.id for spec in quickstart.lineages]
    assert list(off.trunks) == list(quickstart.trunks)
    assert "twin" not in quickstart.config.analysis.canonical()
    # the sweep pinned in tests/unit/test_config.py keeps its id with the twin on (the default)
    before = ["train.epochs=8", "train.lr=0.002", "pruning.rate=0.4", "pruning.rounds=5"]
    assert make_plan(load_config(QUICKSTART, before)).sweep_id == "a8498abef5aa"


def line(text: str, start: str) -> str:
    (found,) = [row for row in text.splitlines() if row.startswith(start)]
    return found


def compute_flops(text: str) -> float:
    value, unit = line(text, "compute: ").split()[1:3]
    return float(value) * {"TFLOP": 1e12, "GFLOP": 1e9}[unit]


def test_the_dry_run_names_the_twins_cost_and_counts_it_in_the_total():
    on = make_plan(load_config(QUICKSTART), check_paths=False).describe()
    off = make_plan(load_config(QUICKSTART, ["analysis.twin=false"]), check_paths=False).describe()
    twins = line(on, "dense twins (analysis.twin")
    assert "2 dense training(s) + 2 measurement(s)" in twins  # one per trunk: 2 seeds
    assert "% of the compute" in twins and "of wall time" in twins and "analysis.twin: false turns them off" in twins
    assert "dense twins 473.8 GFLOP" in line(on, "compute: ")  # as much as the trunks: one dense training each
    assert compute_flops(on) == pytest.approx(compute_flops(off) + 473.8e9, rel=1e-2)
    assert "of analysis and dense twins)" in line(on, "wall time (rough): ")
    assert not [row for row in off.splitlines() if row.startswith("dense twins")]
    assert "dense twins" not in line(off, "wall time (rough): ")
