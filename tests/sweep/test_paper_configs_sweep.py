"""A paper's set-up (Frankle & Carbin's LeNet-300-100 on MNIST) run end to end on the session's Ray,
on miniature data in MNIST's official format. Planning every shipped config without its data:
tests/unit/test_paper_configs.py."""
from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator.cli import main
from tests.support.datasets import write_mnist

FRANKLE = Path(__file__).resolve().parents[2] / "configs" / "papers" / "frankle-carbin.yaml"


@pytest.mark.slow
def test_frankle_carbin_runs_end_to_end_on_miniature_mnist(ray_session, tmp_path, monkeypatch, capsys):
    mnist = write_mnist(tmp_path / "mnist", per_class=20)
    monkeypatch.chdir(tmp_path)
    overrides = [
        f"data.path={mnist}", "data.train_size=200", "data.test_size=100", "train.epochs=1", "train.batch_size=50",
        "pruning.rounds=2", "seeds=[0]", "tracking.uri=sqlite:///mlflow.db", "tracking.experiment=frankle-mini",
    ]
    assert main(["sweep", str(FRANKLE), *[item for o in overrides for item in ("--set", o)]]) == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("frankle-mini")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    kinds = sorted(run.data.tags["lth.kind"] for run in runs)
    assert kinds == ["lineage"] * 3 + ["sweep", "trunk"]
    assert all(run.info.status == "FINISHED" for run in runs)
    for run in (r for r in runs if r.data.tags["lth.kind"] == "lineage"):
        assert run.data.params["trunk.model.name"] == "lenet_300_100" and run.data.params["trunk.data.name"] == "mnist"
        sparsity = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "sparsity")}
        assert sparsity[2] == pytest.approx(1 - 0.8**2, abs=1e-3)
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "calib/ece")) == [1, 2]
