"""Ctrl-C, deleted checkpoints, a rerun of a finished sweep and `--format json`, as a user meets
them: `lth sweep` in a subprocess, interrupted with SIGINT midway, then run again, twice."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import display_name, make_plan
from tests.support.lth_cli import run_lth
from tests.support.sweeps import (
    LTH, assert_equals_uninterrupted, assert_nothing_duplicated, child_env, rounds_of, runs_of, sweep_yaml,
)

pytestmark = pytest.mark.slow
#: Rounds of about a second, so that Ctrl-C lands while the long lineages are midway (past round 2
#: of 6 when it is sent), however fast the machine.
LONG_ROUNDS = {"slow": True, "train": {"epochs": 12}}


def test_ctrl_c_stops_cleanly_and_the_same_command_continues(tmp_path, ray_tmp):
    """Three lineages at once: the short one finishes, then Ctrl-C. One long lineage continues from
    its checkpoint; the other's checkpoints are deleted, so it restarts from round 1 and says so."""
    pruning = [  # the long ones run five times the short one's rounds: still midway when it finishes, however fast the machine
        {"rate": 0.5, "rounds": 2, "rewind": "init"},
        {"rate": 0.2, "rounds": 10, "rewind": 5},
        {"rate": 0.25, "rounds": 10, "rewind": 4},  # "imp@4": display names tell them apart
    ]
    config = yaml.safe_load(sweep_yaml("ctrl-c", pruning, **LONG_ROUNDS))
    config["resources"]["cpus_per_trial"] = 0.5  # all three run at once on 2 CPUs
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config))
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
                unfinished = [r for r in runs if r.info.status != "FINISHED"]
                ready = len(unfinished) == 2 and all(len(rounds_of(client, r.info.run_id)) >= 2 for r in unfinished)
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
    assert "interrupted by Ctrl-C (1/3 lineages finished); run the same command to continue" in said, said[-3000:]
    assert "Traceback" not in said
    statuses = {r.data.tags["lth.id"]: r.info.status for r in runs_of(client)}
    assert "RUNNING" not in statuses.values(), statuses
    lineages = {r.data.tags["lth.id"]: r for r in runs_of(client, "lineage")}
    short, long, restarted = sorted(plan.lineages, key=lambda spec: (spec.pruning.rounds, spec.pruning.rate))
    assert lineages[short.id].info.status == "FINISHED"
    for spec in (long, restarted):
        assert lineages[spec.id].info.status == "KILLED"
        assert "interrupted (Ctrl-C)" in lineages[spec.id].data.tags["lth.notes"]
        assert len(rounds_of(client, lineages[spec.id].info.run_id)) >= 2
    shutil.rmtree(tmp_path / "lth-runs" / f"ctrl-c-{plan.sweep_id}" / restarted.id)  # its checkpoints
    parent = next(r for r in runs_of(client) if r.data.tags["lth.kind"] == "sweep")
    assert parent.info.status == "KILLED"

    # The same command continues it; `--format json` keeps stdout to the summary alone.
    done = subprocess.run(LTH + ["sweep", "sweep.yaml", "--format", "json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-5000:]
    rows = json.loads(done.stdout)
    assert [row["status"] for row in rows] == ["FINISHED"] * 3
    assert f"{display_name(long)}: continues after round" in done.stderr
    assert f"{display_name(restarted)}: continues after round" not in done.stderr
    notes = client.get_run(lineages[restarted.id].info.run_id).data.tags["lth.notes"]
    assert "no checkpoint left in" in notes and "restarted from round 1" in notes
    assert_nothing_duplicated(client)
    for spec in (long, restarted):
        run = client.get_run(lineages[spec.id].info.run_id)
        assert run.info.status == "FINISHED"
        assert_equals_uninterrupted(client, run, spec, tmp_path)

    # Run once more: everything is finished, so it is summarised from MLflow without starting Ray.
    again = run_lth(["sweep", "sweep.yaml", "--format", "json"], tmp_path, env=env)
    assert again.code == 0 and "RAY STARTED" not in again.stderr, again.stderr[-3000:]
    assert json.loads(again.stdout) == rows
    assert "already finished" in again.stderr



def _ray_processes(ray_tmp) -> list[str]:
    """Processes of the Ray instance that uses `ray_tmp` (its session folder is on their command lines)."""
    found = []
    for status in os.listdir("/proc"):
        if status.isdigit():
            try:
                command = open(f"/proc/{status}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(ray_tmp) in command:
                found.append(f"{status}: {command[:200]}")
    return found


@pytest.mark.parametrize("signum,whole_group,continued", [
    (signal.SIGTERM, True, True),  # SLURM's scancel, `ray job stop`: the whole job
    (signal.SIGTERM, False, False),  # Kubernetes: the container's first process alone
    (signal.SIGHUP, True, False),  # a closed terminal: its foreground process group
], ids=["sigterm-group", "sigterm-driver", "sighup-group"])
def test_sigterm_and_sighup_stop_as_ctrl_c_does(tmp_path, ray_tmp, signum, whole_group, continued):
    """A scheduler's or a terminal's signal, to the driver or to every process of the job (Ray's
    too): exit 128 + the signal, the finished lineage FINISHED, the other KILLED with a note, no Ray
    process left behind, and the same command continues it as if nothing had happened."""
    name = signal.Signals(signum).name
    pruning = [{"rate": 0.5, "rounds": 1, "rewind": "init"}, {"rate": 0.2, "rounds": 10, "rewind": 5}]
    config = yaml.safe_load(sweep_yaml("signals", pruning, **LONG_ROUNDS))
    config["resources"]["cpus_per_trial"] = 1
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config))
    plan = make_plan(load_config(tmp_path / "sweep.yaml"))
    short, long = sorted(plan.lineages, key=lambda spec: spec.pruning.rounds)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    env = child_env(ray_tmp)
    with open(tmp_path / "first.err", "w") as err:
        driver = subprocess.Popen(LTH + ["sweep", "sweep.yaml"], cwd=tmp_path, env=env, stdout=err, stderr=err, start_new_session=True)
    deadline, ready = time.monotonic() + 300, False
    try:
        while time.monotonic() < deadline and driver.poll() is None and not ready:
            try:
                lineages = {r.data.tags["lth.id"]: r for r in runs_of(client, "lineage")}
                ready = (short.id in lineages and lineages[short.id].info.status == "FINISHED"
                         and long.id in lineages and len(rounds_of(client, lineages[long.id].info.run_id)) >= 1)
            except Exception:  # the store is being created
                pass
            time.sleep(0.1)
        assert driver.poll() is None, f"the sweep ended before the signal:\n{(tmp_path / 'first.err').read_text()}"
        (os.killpg if whole_group else os.kill)(driver.pid, signum)
        code = driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    said = (tmp_path / "first.err").read_text()
    assert code == 128 + signum, said[-3000:]
    assert f"interrupted by {name} (1/2 lineages finished); run the same command to continue" in said, said[-3000:]
    assert "Traceback" not in said and "GCS" not in said, said[-3000:]
    time.sleep(2)  # what Ray's shutdown killed is gone within its grace period
    assert _ray_processes(ray_tmp) == []
    statuses = {r.data.tags["lth.id"]: r for r in runs_of(client)}
    assert "RUNNING" not in {r.info.status for r in statuses.values()}
    assert statuses[short.id].info.status == "FINISHED"
    assert statuses[long.id].info.status == "KILLED"
    assert f"interrupted ({name})" in statuses[long.id].data.tags["lth.notes"]
    if not continued:
        return
    done = subprocess.run(LTH + ["sweep", "sweep.yaml", "--format", "json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-5000:]
    assert [row["status"] for row in json.loads(done.stdout)] == ["FINISHED"] * 2
    assert f"{display_name(long)}: continues after round" in done.stderr
    assert_nothing_duplicated(client)
    assert_equals_uninterrupted(client, client.get_run(statuses[long.id].info.run_id), long, tmp_path)
