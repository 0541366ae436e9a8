"""A real MLflow tracking server as deploy/ runs it: PostgreSQL, artifacts through the server's
proxy, MLflow's basic auth. Requests without credentials are refused; MLflow's client with
credentials in its environment logs and reads back; `lth sweep`, run as a user runs it (the
installed script, in a child process that starts its own Ray), logs a whole sweep there with the
credentials in the environment only, never in the config, and its `--format json` output, like
`lth query`'s and `lth tickets`', stays parseable. See deploy/local_mlflow_server.py."""
from __future__ import annotations

import base64
import io
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from lth_sweep.analysis.query import _histories_rest
from tests.support.sweeps import TINY_ANALYSIS, child_env, sweep_yaml

pytestmark = pytest.mark.slow

CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")

@pytest.fixture
def clean_env(monkeypatch):
    for name in (*CREDENTIAL_VARS, "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def get(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_requests_without_valid_credentials_are_refused(server):
    api = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert get(api) == 401
    assert get(api, ("admin", "wrong-password-123")) == 401
    assert get(api, ("nobody", server.admin_password)) == 401
    assert get(f"{server.url}/ajax-api/2.0/mlflow/experiments/search?max_results=1") == 401
    assert get(f"{server.url}/api/2.0/mlflow-artifacts/artifacts") == 401  # the artifact proxy too
    assert get(api, ("admin", server.admin_password)) == 200


def test_the_client_logs_and_reads_back_with_credentials_from_the_environment(server, clean_env, tmp_path):
    clean_env.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    clean_env.setenv("MLFLOW_TRACKING_PASSWORD", server.admin_password)
    client = MlflowClient(server.url)
    experiment_id = client.create_experiment("client-roundtrip")
    run = client.create_run(experiment_id, tags={"lth.kind": "test"})
    for step in range(3):
        client.log_metric(run.info.run_id, "test/acc", 0.5 + step / 10, step=step)
    (tmp_path / "note.txt").write_text("hello from the client")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"), "notes")
    client.set_terminated(run.info.run_id)

    again = client.get_run(run.info.run_id)
    assert again.info.status == "FINISHED" and again.data.tags["lth.kind"] == "test"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "test/acc")] == [
        (0, 0.5), (1, 0.6), (2, 0.7)
    ]
    assert again.info.artifact_uri.startswith("mlflow-artifacts:")  # through the server's proxy
    path = client.download_artifacts(run.info.run_id, "notes/note.txt", str(tmp_path / "back"))
    assert open(path).read() == "hello from the client"
    stored = list((server.root / "artifacts").rglob("note.txt"))
    assert len(stored) == 1  # landed in --artifacts-destination

    # What the UI's charts and `lth query` send: one history request naming 100 runs, a ~4.1 kB
    # request line (gunicorn refuses lines over 4094 bytes unless told otherwise).
    others = [secrets.token_hex(16) for _ in range(99)]
    rows = _histories_rest(client._tracking_client.store, [run.info.run_id, *others], "test/acc")
    assert sorted(rows) == [(run.info.run_id, 0, 0.5), (run.info.run_id, 1, 0.6), (run.info.run_id, 2, 0.7)]

    clean_env.delenv("MLFLOW_TRACKING_PASSWORD")
    with pytest.raises(Exception, match="401|Unauthorized|credentials"):
        MlflowClient(server.url).get_run(run.info.run_id)


SWEEP = "on-server"
PRUNING = [{"method": "imp", "rate": 0.5, "rounds": 2}, {"method": "omp", "rate": 0.5, "rounds": 2}]


@pytest.fixture(scope="module")
def lth(server, sweep_user, tmp_path_factory):
    """Runs `lth ARGS` as a user does (the installed script, a child process with its own Ray) in
    one folder, with the sweep user's credentials in its environment only; asserts exit 0 and
    returns (stdout, stderr). The folder is `lth.folder`."""
    folder = tmp_path_factory.mktemp("on-server")
    ray_tmp = Path(tempfile.mkdtemp(prefix="lths", dir="/tmp"))  # Ray's socket paths stay short
    username, password = sweep_user
    env = {**child_env(ray_tmp), "MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password}
    script = str(Path(sys.executable).with_name("lth"))  # the entry point pip installed

    def run(*args: str) -> tuple[str, str]:
        done = subprocess.run([script, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"lth {' '.join(args)}: exit {done.returncode}\n{done.stderr[-5000:]}"
        return done.stdout, done.stderr

    run.folder = folder
    yield run
    shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def swept(server, lth):
    """`lth sweep --format json` of two lineages on the server, the config naming only its URL:
    (stdout, stderr)."""
    config = yaml.safe_load(sweep_yaml(SWEEP, PRUNING, analysis=TINY_ANALYSIS, uri=server.url))
    config["tracking"]["experiment"] = SWEEP
    text = yaml.safe_dump(config)
    assert server.admin_password not in text and "PASSWORD" not in text
    (lth.folder / "sweep.yaml").write_text(text)
    return lth("sweep", "sweep.yaml", "--format", "json")


def test_lth_sweep_logs_to_the_server_with_credentials_from_the_environment_only(server, sweep_user, swept, lth, clean_env):
    username, password = sweep_user
    assert password not in (lth.folder / "sweep.yaml").read_text()
    assert not (lth.folder / "mlflow.db").exists()  # nothing went to the local default store

    clean_env.setenv("MLFLOW_TRACKING_USERNAME", username)
    clean_env.setenv("MLFLOW_TRACKING_PASSWORD", password)
    client = MlflowClient(server.url)  # as the sweep's user, from the environment
    experiment = client.get_experiment_by_name(SWEEP)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["lth.kind"] for r in runs) == ["lineage", "lineage", "sweep", "trunk"]
    assert all(r.info.status == "FINISHED" for r in runs)
    (parent,) = [r for r in runs if r.data.tags["lth.kind"] == "sweep"]
    lineages = [r.info.run_id for r in runs if r.data.tags["lth.kind"] == "lineage"]
    for lineage in lineages:
        assert sorted(m.step for m in client.get_metric_history(lineage, "sparsity")) == [1, 2]
        assert {f.path for f in client.list_artifacts(lineage, "masks")} == {
            "masks/round_01.safetensors", "masks/round_02.safetensors"
        }
    plots = [f.path for f in client.list_artifacts(parent.info.run_id, "plots")]
    assert "plots/accuracy_vs_sparsity.png" in plots and "plots/gradcam_vs_sparsity.png" in plots
    assert len(list((server.root / "artifacts").rglob("round_02.safetensors"))) >= 2  # through the proxy

    # The sweep's user created the experiment, so it manages it; without credentials: refused.
    clean_env.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    clean_env.setenv("MLFLOW_TRACKING_PASSWORD", server.admin_password)
    from mlflow.server import get_app_client

    auth = get_app_client("basic-auth", tracking_uri=server.url)
    assert auth.get_user_permission(username, "experiment", experiment.experiment_id).permission == "MANAGE"
    clean_env.delenv("MLFLOW_TRACKING_PASSWORD")
    assert get(f"{server.url}/api/2.0/mlflow/runs/get?run_id={lineages[0]}") == 401


def test_json_and_csv_on_stdout_stay_parseable_with_an_http_store(server, swept, lth):
    """`lth sweep`, `lth query` and `lth tickets` with `--format json` (and csv) print only their
    document on stdout, although MLflow's client writes "View run ... at: http://..." to stdout
    whenever it ends a run on an HTTP store."""
    out, err = swept
    assert "View run" in err and f"at: {server.url}/#/experiments/" in err  # MLflow's prints: on stderr
    summary = json.loads(out)
    assert sorted(row["method"] for row in summary) == ["imp", "omp"] and all(row["rounds"] == "2/2" for row in summary)
    again = json.loads(lth("sweep", "sweep.yaml", "--format", "json")[0])  # finished: read back from MLflow, no Ray
    assert [row["lineage"] for row in again] == [row["lineage"] for row in summary]

    selector = ("--sweep", SWEEP, "--tracking-uri", server.url)
    rows = json.loads(lth("query", *selector, "--format", "json")[0])
    assert sorted((row["method"], row["round"]) for row in rows) == [("imp", 1), ("imp", 2), ("omp", 1), ("omp", 2)]
    assert all(0 <= row["test/acc"] <= 1 for row in rows)
    table = pd.read_csv(io.StringIO(lth("query", *selector, "--format", "csv")[0]))
    assert len(table) == 4 and {"lineage", "round", "test/acc", "dense/test/acc"} <= set(table.columns)

    verdicts = json.loads(lth("tickets", *selector, "--format", "json")[0])
    assert verdicts["metrics"] and "test/acc" in verdicts["metrics"]
