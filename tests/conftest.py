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

import pytest

from tests.support.sweeps import RAY_INIT

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


#: Files whose tests share nothing (no module fixture; each makes its own sweeps): spread test by test.
INDEPENDENT_TESTS = ("tests/sweep/test_faults.py",)


def work_group(nodeid: str) -> str:
    """The tests that must share one pytest-xdist worker: a file's (its module fixtures: a sweep,
    a server, a browser, made once), and all of tests/infrastructure/ (they install chromium and
    PostgreSQL with apt-get, which two workers would fight over; one MLflow server and one sweep
    for the browser serve them all)."""
    path = nodeid.split("::", 1)[0]
    if path in INDEPENDENT_TESTS:
        return nodeid
    return "tests/infrastructure/" if path.startswith("tests/infrastructure/") else path


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook; `-p no:xdist` runs without it
def pytest_xdist_make_scheduler(config, log):
    """README's test command runs two pytest-xdist workers: the sweeps' child processes, servers
    and browsers leave a core idle much of the time. Each worker has its own session Ray
    (`ray_session`), on its own ports. Work is handed out a `work_group` at a time, the end-to-end
    groups first (those with the most tests first), so that the short unit tests fill in at the end.

    (xdist's own `--dist loadgroup` reads groups from node ids it rewrites, which pytest 9.2 no
    longer lets it do: it silently spread a file's tests over both workers, each making the file's
    module sweep again.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_group(nodeid)

        def _assign_work_unit(self, node) -> None:
            if not getattr(self, "ordered", False):  # the first call: the queue is complete
                units = sorted(self.workqueue.items(), key=lambda unit: (unit[0].startswith("tests/unit/"), -len(unit[1])))
                self.workqueue.clear()
                self.workqueue.update(units)
                self.ordered = True
            super()._assign_work_unit(node)

    return ByWorkGroup(config, log)


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
