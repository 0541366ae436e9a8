"""Reading a sweep straight from MLflow's SQL tables, for users with access to its database.

`load_sweep` with a database URI (`sqlite:///...`, `postgresql+psycopg2://...`) reads through
this module: a handful of plain SELECTs on MLflow's own tables (runs, tags, params,
latest_metrics, metrics) instead of MLflow's ORM, which builds one Python object per metric point
(about 20 s of CPU for 1,000 lineages x 15 rounds x 30 metrics). It returns exactly what the
client path returns (`tests/sweep/test_sweep_e2e.py` compares them on a real sweep).

Only reads, and only a database of the schema revision the installed MLflow expects
(`schema_matches`); any other goes through MLflow's client, which knows its own tables. MLflow
verifies that revision when it opens a store, but caches stores per URI: a process that read a
sweep keeps its store after another MLflow migrates the database (`mlflow db upgrade`).
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, text

from lth_sweep.trainables import record

CHUNK = 500  # run ids per IN (...): well under every database's parameter limit

log = logging.getLogger(__name__)


@dataclass
class RunRecord:
    """The part of an MLflow run a sweep table needs (also built from MlflowClient's runs)."""

    run_id: str
    status: str
    start_time: int
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]  # the latest value of each


def mlflow_schema_revisions() -> tuple[str | None, set[str]]:
    """(the head, every revision) of the installed MLflow's database migrations, read off its
    alembic scripts as text: loading them through alembic imports all of MLflow (2.5 s), which
    `lth query` must not pay. (None, set()) when the scripts cannot be read so."""
    found = importlib.util.find_spec("mlflow")
    if found is None or not found.submodule_search_locations:
        return None, set()
    versions = Path(list(found.submodule_search_locations)[0]) / "store" / "db_migrations" / "versions"
    revisions, parents = set(), set()
    for script in versions.glob("*.py"):
        source = script.read_text(encoding="utf-8", errors="replace")
        revision = re.search(r"^revision\s*=\s*['\"]([0-9a-f]+)['\"]", source, re.MULTILINE)
        down = re.search(r"^down_revision\s*=\s*(.+)$", source, re.MULTILINE)
        if revision:
            revisions.add(revision.group(1))
            parents.update(re.findall(r"[0-9a-f]{6,}", down.group(1)) if down else ())
    heads = revisions - parents
    return (heads.pop() if len(heads) == 1 else None), revisions


@functools.lru_cache(maxsize=1)
def expected_revision() -> str:
    """The head of the installed MLflow's migrations: the schema revision its code is written for."""
    head, _ = mlflow_schema_revisions()
    if head is not None:
        return head
    from mlflow.store.db.utils import _get_latest_schema_revision  # the scripts changed form: ask MLflow

    return _get_latest_schema_revision()


def direct_engine(uri: str):
    """A SQLAlchemy engine on a database tracking URI, without MLflow's client (whose import and
    store set-up cost ~2 s); None for other URIs and for a SQLite file that does not exist (which
    connecting would create)."""
    if not uri.startswith(("sqlite:", "postgresql", "mysql", "mssql")):
        return None
    if uri.startswith("sqlite:"):
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not path or path.startswith(":memory:") or not Path(path).is_file():
            return None
    from sqlalchemy import create_engine

    return create_engine(uri)


def schema_matches(engine) -> bool:
    """Whether the database is at the schema revision the installed MLflow expects (its
    `alembic_version`); if not, or if either cannot be read, logs a warning saying why."""
    try:
        expected = expected_revision()
    except Exception as error:  # noqa: BLE001 - a private MLflow helper that may change
        log.warning("cannot tell which MLflow schema revision to expect (%s): reading through MLflow's client", error)
        return False
    try:
        with engine.connect() as connection:
            found = [row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))]
    except Exception as error:  # noqa: BLE001 - no such table, or no access to it
        log.warning("cannot read the schema revision of %s (%s): reading through MLflow's client", engine.url, error)
        return False
    if found != [expected]:
        log.warning(
            "%s is at MLflow schema revision %s, not %s (the installed MLflow's): reading through MLflow's client",
            engine.url, ", ".join(found) or "none", expected,
        )
        return False
    return True


def _chunks(ids: list[str]):
    for i in range(0, len(ids), CHUNK):
        yield ids[i : i + CHUNK]


def _select(connection, sql: str, run_ids: list[str], **params) -> list:
    statement = text(sql).bindparams(bindparam("ids", expanding=True))
    rows = []
    for chunk in _chunks(run_ids):
        rows += connection.execute(statement, {"ids": chunk, **params}).fetchall()
    return rows


def _value(value, is_nan) -> float:
    return math.nan if is_nan else float(value)


def _in_experiment(connection, experiment: str | None) -> tuple[str, dict]:
    """The SQL condition (on runs `r`) and its parameters that keep to `experiment`, if given."""
    if experiment is None:
        return "", {}
    found = connection.execute(
        text("SELECT experiment_id FROM experiments WHERE name = :name AND lifecycle_stage = 'active'"), {"name": experiment},
    ).fetchone()
    if found is None:
        raise LookupError(f"no MLflow experiment named {experiment!r}")
    return " AND r.experiment_id = :experiment", {"experiment": found[0]}


def sweep_names(engine, experiment: str | None) -> set[str]:
    """The names of the sweeps with active runs (in `experiment` when given)."""
    with engine.connect() as connection:
        where, params = _in_experiment(connection, experiment)
        rows = connection.execute(
            text(
                "SELECT DISTINCT t.value FROM tags t JOIN runs r ON t.run_uuid = r.run_uuid "
                "JOIN experiments e ON e.experiment_id = r.experiment_id "
                f"WHERE t.key = '{record.SWEEP}' AND r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active'" + where
            ),
            params,
        ).fetchall()
    return {row[0] for row in rows}


def sweep_records(engine, sweep: str, experiment: str | None) -> list[RunRecord]:
    """Active runs tagged `lth.sweep = sweep` (in `experiment` when given), with tags, params and
    latest metrics. An empty list when there are none; a missing experiment raises LookupError."""
    with engine.connect() as connection:
        where, params = _in_experiment(connection, experiment)
        params["sweep"] = sweep
        runs = connection.execute(
            text(
                "SELECT r.run_uuid, r.status, r.start_time FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                "JOIN experiments e ON e.experiment_id = r.experiment_id "
                f"WHERE t.key = '{record.SWEEP}' AND t.value = :sweep AND r.lifecycle_stage = 'active' "
                "AND e.lifecycle_stage = 'active'" + where
            ),
            params,
        ).fetchall()
        records = {run_id: RunRecord(run_id, status, start_time or 0, {}, {}, {}) for run_id, status, start_time in runs}
        ids = list(records)
        for run_id, key, value in _select(connection, "SELECT run_uuid, key, value FROM tags WHERE run_uuid IN :ids", ids):
            records[run_id].tags[key] = value
        for run_id, key, value in _select(connection, "SELECT run_uuid, key, value FROM params WHERE run_uuid IN :ids", ids):
            records[run_id].params[key] = value
        latest = "SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN :ids"
        for run_id, key, value, is_nan in _select(connection, latest, ids):
            records[run_id].metrics[key] = _value(value, is_nan)
    return list(records.values())


def histories(engine, run_ids: list[str]) -> dict[str, dict[int, dict[str, float]]]:
    """run id -> step -> metric -> value, for every metric of the runs; at a step logged twice
    the later value wins (MLflow's order: timestamp, then value), as in the client path."""
    out: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    sql = (
        "SELECT run_uuid, key, step, value, is_nan FROM metrics WHERE run_uuid IN :ids "
        "ORDER BY run_uuid, key, timestamp, step, value"
    )
    with engine.connect() as connection:
        for run_id, key, step, value, is_nan in _select(connection, sql, run_ids):
            out[run_id][int(step)][key] = _value(value, is_nan)
    return out
