"""The direct-SQL query path reads only a database of the schema revision the installed MLflow
expects; any other is read through MLflow's client, with a warning, and gives the same table."""
from __future__ import annotations

import logging
import sqlite3

import pandas as pd
import pytest
from alembic.script import ScriptDirectory
from mlflow.store.db.utils import _get_alembic_config
from mlflow.tracking import MlflowClient

from lth_sweep.analysis import query_sql
from lth_sweep.analysis.query import load_sweep
from lth_sweep.trainables import record

SWEEP = "schema-check"


def write_sweep(client: MlflowClient) -> None:
    """A sweep as lth-sweep logs one: a parent run, a trunk, two lineages of two rounds each."""
    experiment = client.create_experiment("schema")
    parent = client.create_run(experiment, tags={record.KIND: record.SWEEP_KIND, record.SWEEP: SWEEP, record.ID: "s1"})
    parent_id = parent.info.run_id
    child = {record.SWEEP: SWEEP, record.PARENT: parent_id}
    trunk = client.create_run(experiment, tags={**child, record.KIND: record.TRUNK_KIND, record.ID: "t1"})
    record.log_metrics(client, trunk.info.run_id, 0, {"test/acc": 0.9, "test/loss": 0.3})
    for label, rate in (("imp", 0.5), ("omp", 0.2)):
        tags = {**child, record.KIND: record.LINEAGE_KIND, record.ID: f"l-{label}", record.METHOD: label, record.TRUNK: "t1"}
        run_id = client.create_run(experiment, tags=tags).info.run_id
        record.log_params(client, run_id, {"pruning.rate": str(rate), "trunk.seed": "0"})
        for step in (1, 2):
            metrics = {"test/acc": 0.9 - rate * step / 10, "test/loss": 0.3 + step / 10, record.ROUND_DONE: 1 - (1 - rate) ** step}
            record.log_metrics(client, run_id, step, metrics, marker=record.ROUND_DONE)
        client.set_terminated(run_id)


def set_revision(uri: str, revision: str) -> None:
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))


@pytest.fixture
def sql_calls(monkeypatch) -> list[str]:
    """The direct-SQL reader's functions called (they still run)."""
    calls: list[str] = []
    for name in ("sweep_records", "histories"):
        real = getattr(query_sql, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(query_sql, name, spy)
    return calls


def test_a_database_of_another_schema_revision_is_read_through_the_client(mlflow_store, sql_calls, caplog):
    write_sweep(MlflowClient(mlflow_store))
    by_sql = load_sweep(SWEEP, mlflow_store)
    assert sql_calls == ["sweep_records", "histories"]  # the expected revision: plain SQL
    assert len(by_sql) == 4 and set(by_sql["round"]) == {1, 2} and by_sql["dense/test/acc"].eq(0.9).all()
    pd.testing.assert_frame_equal(by_sql, load_sweep(SWEEP, mlflow_store, sql=False))

    # This process keeps its MLflow store (MLflow caches one per URI, having checked the revision
    # when it opened it), as a notebook would while another MLflow migrates the database.
    head = query_sql.expected_revision()
    older = ScriptDirectory.from_config(_get_alembic_config(db_url="")).get_revision(head).down_revision
    set_revision(mlflow_store, older)
    sql_calls.clear()
    with caplog.at_level(logging.WARNING, logger="lth_sweep.analysis.query_sql"):
        again = load_sweep(SWEEP, mlflow_store)
    assert sql_calls == []
    pd.testing.assert_frame_equal(again, by_sql)
    (warning,) = [r for r in caplog.records if r.name == "lth_sweep.analysis.query_sql"]
    assert warning.levelno == logging.WARNING
    assert f"revision {older}, not {head}" in warning.getMessage() and "MLflow's client" in warning.getMessage()


def test_the_expected_revision_is_the_one_mlflow_writes(mlflow_store):
    with sqlite3.connect(mlflow_store.removeprefix("sqlite:///")) as connection:
        (written,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert query_sql.expected_revision() == written


def test_the_migrations_read_as_text_give_mlflow_s_own_head():
    from mlflow.store.db.utils import _get_latest_schema_revision

    head, revisions = query_sql.mlflow_schema_revisions()
    assert head == _get_latest_schema_revision()
    assert len(revisions) > 10 and head in revisions


def test_reading_a_missing_sqlite_store_directly_does_not_create_it(tmp_path):
    missing = tmp_path / "nowhere.db"
    assert query_sql.direct_engine(f"sqlite:///{missing}") is None
    assert not missing.exists()
    assert query_sql.direct_engine("http://127.0.0.1:5000") is None
