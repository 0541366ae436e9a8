"""A sweep's storage folder reused against another tracking store (a copied or moved folder, a new
store): the checkpoints there are not this store's, so every lineage starts at round 1 and the new
store gets every round, instead of continuing after rounds it never saw."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.config import load_config
from orchestrator.plan import make_plan
from orchestrator.sweep import run_sweep
from tests.support.sweeps import EXPERIMENT, runs_of, sweep_yaml

pytestmark = pytest.mark.slow


def test_checkpoints_of_another_store_are_not_continued(ray_session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "first.yaml").write_text(sweep_yaml("copied", [{"rate": 0.5, "rounds": 2}], uri="sqlite:///first.db"))
    (tmp_path / "second.yaml").write_text(sweep_yaml("copied", [{"rate": 0.5, "rounds": 2}], uri="sqlite:///second.db"))
    first = run_sweep(make_plan(load_config(tmp_path / "first.yaml")))
    assert first.succeeded and list((tmp_path / "lth-runs").rglob("checkpoint_*"))

    second = run_sweep(make_plan(load_config(tmp_path / "second.yaml")))  # same storage folder, empty store
    assert second.succeeded
    client = MlflowClient(f"sqlite:///{tmp_path / 'second.db'}")
    (lineage,) = runs_of(client, "lineage", EXPERIMENT)
    assert sorted(m.step for m in client.get_metric_history(lineage.info.run_id, "sparsity")) == [1, 2]
    assert "is not this store's" in lineage.data.tags["lth.notes"]
    assert second.rows[0]["last_acc"] == first.rows[0]["last_acc"]  # deterministic: the same lineage again
