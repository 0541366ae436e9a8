"""Ctrl-C, a rerun of a finished sweep, and `--format json`, as a user meets them: `lth sweep` in a
subprocess, interrupted with SIGINT midway, then run again."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.config import load_config
from orchestrator.plan import display_name, make_plan
from tests.support.lth_cli import run_lth
from tests.support.sweeps import (
    LTH, assert_equals_uninterrupted, assert_nothing_duplicated, child_env, rounds_of, runs_of, sweep_yaml,
)

pytestmark = pytest.mark.slow
#: Rounds of about 2 s, so that Ctrl-C lands while a lineage is midway, however fast the machine.
LONG_ROUNDS = {"slow": True, "train": {"epochs": 40}}


def test_ctrl_c_stops_cleanly_and_the_same_command_continues(tmp_path, ray_tmp):
    pruning = [{"rate": 0.5, "rounds": 2, "rewind": "init"}, {"rate": 0.3, "rounds": 8, "rewind": 5}]
    (tmp_path / "sweep.yaml").write_text(sweep_yaml("ctrl-c", pruning, **LONG_ROUNDS))
    plan = make_plan(load_config(tmp_path / "sweep.yaml"))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    env = child_env(ray_tmp)
    with open(tmp_path / "first.err", "w") as err:
        driver = subprocess.Popen(  # its own process group, as a terminal's foreground job
            LTH + ["sweep", "sweep.yaml"], cwd=tmp_path, env=env, stdout=err, stderr=err, start_new_session=True,
        )
    deadline, ready = time.monotonic() + 300, False
    try:
        while time.monotonic() < deadline and driver.poll() is None and not ready:
            try:
                runs = runs_of(client, "lineage")
                ready = any(r.info.status == "FINISHED" for r in runs) and any(
                    len(rounds_of(client, r.info.run_id)) >= 2 for r in runs if r.info.status != "FINISHED"
                )
            except Exception:  # the store is being created
                pass
            time.sleep(0.1)
        assert driver.poll() is None, f"the sweep ended before Ctrl-C:\n{(tmp_path / 'first.err').read_text()}"
        os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C: the whole foreground job, Ray's processes too
        code = driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    said = (tmp_path / "first.err").read_text()
    assert code == 130, said[-3000:]
    assert "interrupted (1/2 lineages finished); run the same command to continue" in said, said[-3000:]
    assert "Traceback" not in said
    statuses = {r.data.tags["lth.id"]: r.info.status for r in runs_of(client)}
    assert "RUNNING" not in statuses.values(), statuses
    lineages = {r.data.tags["lth.id"]: r for r in runs_of(client, "lineage")}
    short, long = plan.lineages if plan.lineages[0].pruning.rounds == 2 else plan.lineages[::-1]
    assert lineages[short.id].info.status == "FINISHED"
    assert lineages[long.id].info.status == "KILLED"
    assert "interrupted (Ctrl-C)" in lineages[long.id].data.tags["lth.notes"]
    parent = next(r for r in runs_of(client) if r.data.tags["lth.kind"] == "sweep")
    assert parent.info.status == "KILLED"

    # The same command continues it; `--format json` keeps stdout to the summary alone.
    done = subprocess.run(LTH + ["sweep", "sweep.yaml", "--format", "json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-5000:]
    rows = json.loads(done.stdout)
    assert [row["status"] for row in rows] == ["FINISHED", "FINISHED"]
    assert f"{display_name(long)}: continues after round" in done.stderr
    assert_nothing_duplicated(client)
    run = client.get_run(lineages[long.id].info.run_id)
    assert run.info.status == "FINISHED"
    assert_equals_uninterrupted(client, run, long, tmp_path)

    # Run once more: everything is finished, so it is summarised from MLflow without starting Ray.
    again = run_lth(["sweep", "sweep.yaml", "--format", "json"], tmp_path, env=env)
    assert again.code == 0 and "RAY STARTED" not in again.stderr, again.stderr[-3000:]
    assert json.loads(again.stdout) == rows
    assert "already finished" in again.stderr


def test_deleted_checkpoints_restart_from_round_1_and_say_so(tmp_path, ray_tmp):
    (tmp_path / "sweep.yaml").write_text(sweep_yaml("no-checkpoints", [{"rate": 0.3, "rounds": 8, "rewind": 5}], **LONG_ROUNDS))
    plan = make_plan(load_config(tmp_path / "sweep.yaml"))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    env = child_env(ray_tmp)
    with open(tmp_path / "first.err", "w") as err:
        driver = subprocess.Popen(  # its own process group, as a terminal's foreground job
            LTH + ["sweep", "sweep.yaml"], cwd=tmp_path, env=env, stdout=err, stderr=err, start_new_session=True,
        )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            try:
                runs = runs_of(client, "lineage")
                if runs and len(rounds_of(client, runs[0].info.run_id)) >= 2:
                    break
            except Exception:
                pass
            time.sleep(0.1)
        os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C: the whole foreground job, Ray's processes too
        assert driver.wait(timeout=120) == 130, (tmp_path / "first.err").read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
    shutil.rmtree(tmp_path / "lth-runs")
    done = subprocess.run(LTH + ["sweep", "sweep.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-5000:]
    run = runs_of(client, "lineage")[0]
    assert "no checkpoint left" in run.data.tags["lth.notes"] and "restarted from round 1" in run.data.tags["lth.notes"]
    assert_nothing_duplicated(client)
    assert_equals_uninterrupted(client, client.get_run(run.info.run_id), plan.lineages[0], tmp_path)
