"""Checkpoints in an object store: with `storage: s3://...`, against a real S3 API (moto's server on
loopback), trials write their round checkpoints to the bucket, and a new driver continues an
interrupted lineage from the checkpoint it finds there.

The sweep runs in a child process with its own Ray (as in test_faults.py), so that its workers see
the S3 credentials, which come from the environment as on a cluster, never from the config."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from deploy.local_mlflow_server import free_port
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import display_name, make_plan
from tests.support.sweeps import LTH, assert_nothing_duplicated, child_env, rounds_of, runs_of, sweep_yaml

pytestmark = pytest.mark.slow

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "lth-test", "AWS_SECRET_ACCESS_KEY": "lth-test-secret", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3_endpoint(tmp_path):
    port = free_port()
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    else:
        server.kill()
        pytest.fail(f"moto's S3 server did not start: {(tmp_path / 'moto.log').read_text()[-2000:]}")
    yield url
    server.kill()
    server.wait()


def test_checkpoints_in_s3_carry_a_lineage_over_to_a_new_driver(tmp_path, ray_tmp, s3_endpoint):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **{k.lower(): v for k, v in CREDENTIALS.items() if "KEY" in k},
                      region_name=CREDENTIALS["AWS_DEFAULT_REGION"])
    s3.create_bucket(Bucket="lth")
    storage = f"s3://lth/runs?endpoint_override={s3_endpoint.removeprefix('http://')}&scheme=http"
    config = sweep_yaml("s3-storage", [{"rate": 0.5, "rounds": 3, "rewind": "init"}]).replace(
        "resources:", f"storage: '{storage}'\nresources:", 1
    )
    (tmp_path / "sweep.yaml").write_text(config)
    plan = make_plan(load_config(tmp_path / "sweep.yaml"))
    (lineage,) = plan.lineages
    env = {**child_env(ray_tmp), **CREDENTIALS}

    first = subprocess.run(LTH + ["sweep", "sweep.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-4000:]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lth", Prefix="runs/")["Contents"]]
    states = [k for k in keys if k.startswith(f"runs/s3-storage-{plan.sweep_id}/{lineage.id}/checkpoint_") and k.endswith("/state.json")]
    print(f"\n{len(keys)} objects in s3://lth/runs/; the lineage's checkpoint: {states}")
    assert states and not (tmp_path / "lth-runs").exists()  # nothing fell back to a local folder

    # The lineage's run as a dead driver leaves it: not finished. A new driver must find the
    # checkpoint in the bucket, load it (checksums verified after download), and train nothing.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = runs_of(client, "lineage")
    client.set_terminated(run.info.run_id, "FAILED")
    second = subprocess.run(LTH + ["sweep", "sweep.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-4000:]
    assert f"{display_name(lineage)}: continues after round 3" in second.stderr
    assert f"{display_name(lineage)}: round " not in second.stderr  # no round trained again
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED" and "left by an earlier driver" in run.data.tags["lth.notes"]
    assert rounds_of(client, run.info.run_id) == [1, 2, 3]
    assert_nothing_duplicated(client)
