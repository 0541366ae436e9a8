"""A sweep's storage folder reused against another tracking store (a copied or moved folder, a new
store): the checkpoints there are not this store's, so every lineage starts at round 1 and the new
store gets every round, instead of continuing after rounds it never saw."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import make_plan
from lth_sweep.orchestrator.sweep import run_sweep
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


def test_a_store_copied_or_moved_with_lth_store_is_independent_of_the_original(ray_session, tmp_path, monkeypatch):
    """`lth store copy`: with the original gone, the copy exports and takes a new sweep, whose
    artifacts land beside the copy; `lth store move` then relocates the copy once more."""
    from lth_sweep.orchestrator.store_copy import local_path
    from tests.support.lth_cli import run_lth

    monkeypatch.chdir(tmp_path)
    (tmp_path / "original").mkdir()
    (tmp_path / "sweep.yaml").write_text(sweep_yaml("stored", [{"rate": 0.5, "rounds": 2}], uri="sqlite:///original/mlflow.db"))
    assert run_sweep(make_plan(load_config(tmp_path / "sweep.yaml"))).succeeded
    original = MlflowClient(f"sqlite:///{tmp_path / 'original' / 'mlflow.db'}")
    (lineage,) = runs_of(original, "lineage", EXPERIMENT)
    assert local_path(lineage.info.artifact_uri).is_relative_to(tmp_path / "original" / "mlruns")  # beside its database

    copied = run_lth(["store", "copy", "original/mlflow.db", "copy/mlflow.db"], tmp_path)
    assert copied.code == 0, copied.stderr
    assert "copied" in copied.stdout and "artifact folders" in copied.stdout
    again = run_lth(["store", "copy", "original/mlflow.db", "copy/mlflow.db"], tmp_path)
    assert again.code == 2 and "exists; copy to a new file" in again.stderr and not again.traceback
    (tmp_path / "original").rename(tmp_path / "gone")  # the original moved away: the copy stands alone
    before = sorted(str(p) for p in (tmp_path / "gone").rglob("*"))

    copy_uri = f"sqlite:///{tmp_path / 'copy' / 'mlflow.db'}"
    export = ["export", "--sweep", "stored", "--label", "imp", "--seed", "0", "--round", "2", "--tracking-uri", copy_uri]
    exported = run_lth([*export, "--out", "ticket"], tmp_path)
    assert exported.code == 0, exported.stderr

    (tmp_path / "more.yaml").write_text(sweep_yaml("more", [{"rate": 0.5, "rounds": 2}], seeds=(1,), uri=copy_uri))
    assert run_sweep(make_plan(load_config(tmp_path / "more.yaml"))).succeeded
    copy = MlflowClient(copy_uri)
    for run in copy.search_runs([e.experiment_id for e in copy.search_experiments()]):
        assert local_path(run.info.artifact_uri).is_relative_to(tmp_path / "copy" / "mlruns"), run.info.artifact_uri
    assert sorted(str(p) for p in (tmp_path / "gone").rglob("*")) == before  # the original untouched

    missing = run_lth(["store", "move", "copy/mlflow.db", "moved"], made(tmp_path / "moved"))  # run from the wrong folder
    assert missing.code == 2 and "copy/mlflow.db: no such database" in missing.stderr and not missing.traceback
    moved = run_lth(["store", "move", "copy/mlflow.db", "moved"], tmp_path)
    assert moved.code == 0, moved.stderr
    assert not (tmp_path / "copy" / "mlflow.db").exists()
    assert not [p for p in (tmp_path / "copy").rglob("*") if p.is_file()]  # every run's files went with it
    moved_uri = f"sqlite:///{tmp_path / 'moved' / 'mlflow.db'}"
    assert run_lth([*export[:-1], moved_uri, "--out", "ticket2"], tmp_path).code == 0


def made(folder):
    folder.mkdir()
    return folder
