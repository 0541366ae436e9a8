"""Fixtures of the infrastructure tests: one real PostgreSQL-backed MLflow server with basic auth
for the session (starting one takes tens of seconds), and a non-admin user on it; one tiny real
sweep on SQLite, run twice, that the browser tests look at through one `lth ui` (a sweep costs
about a minute, so test_mlflow_ui and test_mlflow_browse share it: they are on one worker)."""
from __future__ import annotations

import os
import secrets
import sys
import time

import pytest

from deploy.local_mlflow_server import start_server, stop_server
from tests.support.ui_sweep import ARTIFACTS, UI_CONFIG, UI_LINEAGES, UI_TRUNK, UiSweep


@pytest.fixture(scope="session")
def server():
    server = start_server()  # raises, never skips, if PostgreSQL or MLflow cannot be had
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in server.timings.items())
    print(f"\nMLflow test server at {server.url} ready: {timings}", file=sys.stderr)
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def sweep_user(server):
    """A non-admin user for sweeps, created by the admin through MLflow's auth API, as the README
    of deploy/ tells an operator to do."""
    password = secrets.token_urlsafe(18)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", server.admin_password)
        from mlflow.server import get_app_client

        get_app_client("basic-auth", tracking_uri=server.url).create_user("lth-sweep", password)
    return "lth-sweep", password


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium + chromium-driver, installed before the sweep so a machine without them
    fails fast; the screenshots of an earlier session removed."""
    from tests.support.browser import ensure_chromium

    seconds = ensure_chromium()  # raises BrowserSetupError, never skips
    if seconds:
        print(f"\ninstalled chromium and chromium-driver in {seconds:.0f} s", file=sys.stderr)
    ARTIFACTS.mkdir(exist_ok=True)
    for old in [*ARTIFACTS.glob("mlflow_ui_*"), *ARTIFACTS.glob("mlflow_browse_*")]:
        old.unlink()
    return seconds


@pytest.fixture(scope="session")
def ui_sweep(chromium, ray_session, tmp_path_factory) -> UiSweep:
    """UI_CONFIG swept on the session's Ray, then run again: finished, so read back from MLflow
    and summarised again without Ray (nothing may be duplicated by that)."""
    from mlflow.tracking import MlflowClient

    from lth_sweep.orchestrator.cli import main
    from lth_sweep.orchestrator.config import load_config
    from lth_sweep.orchestrator.plan import make_plan

    workdir = tmp_path_factory.mktemp("ui-sweep")
    (workdir / "sweep.yaml").write_text(UI_CONFIG)
    cwd = os.getcwd()
    os.chdir(workdir)
    start = time.monotonic()
    try:
        assert main(["sweep", "sweep.yaml"]) == 0
        assert main(["sweep", "sweep.yaml"]) == 0
        data_id = make_plan(load_config("sweep.yaml")).lineages[0].trunk.data.id
    finally:
        os.chdir(cwd)
    print(f"\nsweep for the UI tests ran (twice) in {time.monotonic() - start:.0f} s", file=sys.stderr)
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ui-test")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags["lth.kind"] == "sweep"]
    found = {r.info.run_name: r for r in runs}
    assert len(runs) == len(found) and set(found) == {"ui", UI_TRUNK, *UI_LINEAGES}, "the rerun duplicated a run"
    return UiSweep(workdir, experiment.experiment_id, {"parent": parent, **found}, data_id)


@pytest.fixture(scope="session")
def ui(ui_sweep):
    """`lth ui` serving the sweep's store, as a user starts it in the sweep's folder."""
    from tests.support.browser import MlflowUi

    server = MlflowUi(ui_sweep.workdir)
    start = time.monotonic()
    server.start()  # raises BrowserSetupError with the server's log, never skips
    print(f"`lth ui` ready at {server.url} in {time.monotonic() - start:.0f} s", file=sys.stderr)
    yield server
    server.stop()
