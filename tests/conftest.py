"""Fixtures for the whole suite. Tests are grouped by what they need:

- unit/            no Ray and no sweep: specs, models, pruning, training, the analysis run in-process,
                   config and CLI errors, plots, verdicts (fixtures: unit/conftest.py)
- sweep/           the session's Ray (`ray_session`) or a whole sweep, end to end, in-process or in a
                   child process with its own Ray (fixtures: sweep/conftest.py)
- infrastructure/  what surrounds the sweeps: the deploy/ manifests, a real PostgreSQL-backed MLflow
                   server with basic auth, MLflow's UI in a headless browser
- support/         helpers that are not tests (tiny specs, sweep configs and read-back, datasets
                   written to disk, the browser)

Here: one real Ray for the whole session, and an empty MLflow store on SQLite.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.sweeps import RAY_INIT, ROOT

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """README's test command runs two pytest-xdist workers (`--dist loadgroup`, pyproject.toml): the
    sweeps' child processes, servers and browsers leave a core idle a quarter of the time. A file's
    tests stay on one worker, so that its module fixtures (a sweep, a server, a browser) are made
    once; the infrastructure tests share one worker: they install chromium and PostgreSQL with
    apt-get, which two workers would fight over, and one MLflow server serves them all. Each worker
    has its own session Ray (`ray_session`), on its own ports."""
    for item in items:
        path = Path(str(item.fspath)).relative_to(ROOT)
        group = "infrastructure" if path.parts[:2] == ("tests", "infrastructure") else path.as_posix()
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def ray_session():
    """The session's Ray (RAY_INIT: 2 CPUs, one logical GPU), started on first use."""
    import ray

    ray.init(**RAY_INIT)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def _empty_mlflow_db(tmp_path_factory):
    """An MLflow SQLite store with MLflow's tables created (its migrations take a second or more),
    made once per session and never written to: `mlflow_store` hands out copies."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(_empty_mlflow_db, tmp_path) -> str:
    """The URI of a new, empty MLflow store on SQLite in this test's tmp_path (tmp_path/mlflow.db),
    the same as MLflow creates on first use, without waiting for its migrations again."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(_empty_mlflow_db, path)
    return f"sqlite:///{path}"
