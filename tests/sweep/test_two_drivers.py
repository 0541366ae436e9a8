"""Two drivers on one sweep and one store, as a retried cluster job or a second terminal starts them:
one runs it, the other exits 2 naming it, or with --wait continues after it, taking over the
lease of a driver that was killed. Nothing is trained or logged twice."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import display_name, make_plan
from tests.support.sweeps import (
    LTH, assert_equals_uninterrupted, assert_nothing_duplicated, child_env, rounds_of, runs_of, sweep_yaml,
)

pytestmark = pytest.mark.slow


def _driver(tmp_path, ray_tmp, name: str, *extra: str, env: dict | None = None) -> subprocess.Popen:
    folder = ray_tmp / name
    folder.mkdir()
    with open(tmp_path / f"{name}.err", "w") as err, open(tmp_path / f"{name}.out", "w") as out:
        return subprocess.Popen(
            LTH + ["sweep", "sweep.yaml", "--format", "json", *extra], cwd=tmp_path, env={**child_env(folder), **(env or {})},
            stdout=out, stderr=err, start_new_session=True,
        )


def test_two_drivers_started_at_once_run_the_sweep_once(tmp_path, ray_tmp):
    """On a new store: they also race to create it (MLflow makes its tables without a lock)."""
    (tmp_path / "sweep.yaml").write_text(sweep_yaml(
        "twice", [{"rate": 0.5, "rounds": 2, "rewind": "init"}, {"method": "random", "rate": 0.5, "rounds": 2}],
    ))
    mlflow_store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    drivers = {name: _driver(tmp_path, ray_tmp, name) for name in ("a", "b")}
    codes = {name: driver.wait(timeout=400) for name, driver in drivers.items()}
    said = {name: (tmp_path / f"{name}.err").read_text() for name in drivers}
    assert sorted(codes.values()) == [0, 2], said
    loser = next(name for name, code in codes.items() if code == 2)
    assert "sweep twice is being run by driver" in said[loser] and "wait for it (--wait)" in said[loser], said[loser]
    assert "Traceback" not in said[loser]
    client = MlflowClient(mlflow_store)
    assert len(runs_of(client, "sweep")) == 1 and len(runs_of(client, "trunk")) == 1
    assert [r.info.status for r in runs_of(client, "lineage")] == ["FINISHED"] * 2
    assert_nothing_duplicated(client)


def test_a_waiting_driver_takes_over_from_a_killed_one_and_nothing_is_logged_twice(tmp_path, ray_tmp, mlflow_store):
    """Driver a is killed (SIGKILL, no clean-up) midway through a lineage; driver b, started with
    --wait while a ran, waits for a's lease to lapse, continues the lineage from its checkpoint,
    and the result equals an uninterrupted run."""
    pruning = [{"rate": 0.2, "rounds": 10, "rewind": 5}]  # rounds of 1-2 s: b starts and waits while a is midway
    (tmp_path / "sweep.yaml").write_text(sweep_yaml("takeover", pruning, uri=mlflow_store, slow=True, train={"epochs": 30}))
    plan = make_plan(load_config(tmp_path / "sweep.yaml"))
    (spec,) = plan.lineages
    client = MlflowClient(mlflow_store)
    lapse = {"LTH_LEASE_LAPSE_S": "8"}
    first = _driver(tmp_path, ray_tmp, "a", env=lapse)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        lineages = runs_of(client, "lineage")
        if lineages and len(rounds_of(client, lineages[0].info.run_id)) >= 1:
            break
        time.sleep(0.2)
    assert first.poll() is None, (tmp_path / "a.err").read_text()[-3000:]
    second = _driver(tmp_path, ray_tmp, "b", "--wait", env=lapse)
    try:
        deadline = time.monotonic() + 60
        while "waiting for driver" not in (tmp_path / "b.err").read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        said = (tmp_path / "b.err").read_text()
        assert "waiting for driver" in said and f":{first.pid} (since" in said, said[-3000:]
        (lineage,) = runs_of(client, "lineage")
        assert lineage.info.status == "RUNNING", "a finished before it could be killed: make its rounds longer"
        os.kill(first.pid, signal.SIGKILL)  # no clean-up: its lease stays until it lapses
        first.wait(timeout=30)
        code = second.wait(timeout=400)
    finally:
        for driver in (first, second):
            if driver.poll() is None:
                driver.kill()
    said = (tmp_path / "b.err").read_text()
    assert code == 0, said[-5000:]
    assert [row["status"] for row in json.loads((tmp_path / "b.out").read_text())] == ["FINISHED"]
    assert f"{display_name(spec)}: continues after round" in said, said[-3000:]
    assert len(runs_of(client, "sweep")) == 1 and len(runs_of(client, "lineage")) == 1
    assert_nothing_duplicated(client)
    assert_equals_uninterrupted(client, runs_of(client, "lineage")[0], spec, tmp_path)
