"""The storage path fills up mid-sweep (ENOSPC): lineages that cannot checkpoint fail saying so, and
the driver still ends the sweep: exit 1, the summary of what finished, every run ended, the parent
FAILED with the cause. Before, Tune's driver crashed reading an error file it could not write.

The full disk is real: a 600 KB tmpfs mounted in a private mount namespace (`unshare`), which
needs no privilege where user namespaces are allowed, and the tracking store on the normal disk."""
from __future__ import annotations

import json
import os
import shlex
import subprocess

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.support.sweeps import LTH, child_env, runs_of, sweep_yaml

pytestmark = pytest.mark.slow


def _unshare() -> list[str]:
    command = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    try:
        probe = subprocess.run([*command, "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"no private mount namespace here ({error}): cannot make a small disk to fill")
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here ({probe.stderr.decode().strip()}): cannot make a small disk to fill")
    return command


def test_a_full_storage_disk_ends_the_sweep_with_its_summary_and_the_cause(tmp_path, ray_tmp):
    unshare = _unshare()
    small = tmp_path / "small"
    small.mkdir()
    pruning = [{"rate": 0.3, "rounds": 6, "rewind": 5}, {"method": "random", "rate": 0.3, "rounds": 6}]
    config = yaml.safe_load(sweep_yaml("full", pruning, seeds=(0, 1), slow=True))
    config["storage"] = str(small / "runs")  # checkpoints fill 600 KB within a few rounds
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config))
    lth = " ".join(shlex.quote(part) for part in [*LTH, "sweep", "sweep.yaml", "--format", "json"])
    script = f"mount -t tmpfs -o size=600k tmpfs {shlex.quote(str(small))} && exec {lth}"
    done = subprocess.run([*unshare, "sh", "-c", script], cwd=tmp_path, env=child_env(ray_tmp), capture_output=True,
                          text=True, timeout=600)
    said = done.stderr
    assert done.returncode == 1, said[-5000:]
    assert f"no space left on the device of the storage path {small / 'runs'}" in said, said[-5000:]
    assert "Traceback" not in said, said[-5000:]
    rows = json.loads(done.stdout)  # the summary: what finished, and what failed
    assert len(rows) == 4 and {row["status"] for row in rows} <= {"FINISHED", "FAILED"} and "FAILED" in {row["status"] for row in rows}
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert "RUNNING" not in {run.info.status for run in runs_of(client)}
    (parent,) = runs_of(client, "sweep")
    assert parent.info.status == "FAILED" and "no space left" in parent.data.tags["lth.error"]
    failed = [run for run in runs_of(client, "lineage") if run.info.status == "FAILED"]
    assert failed and all("No space left on device" in run.data.tags["lth.error"] or "no space left" in run.data.tags["lth.error"]
                          for run in failed)
