"""A real MLflow tracking server as deploy/ runs it: PostgreSQL, artifacts through the server's
proxy, MLflow's basic auth. Requests without credentials are refused; MLflow's client with
credentials in its environment logs and reads back; `lth sweep` logs a whole sweep there with the
credentials in the environment only, never in the config. See deploy/local_mlflow_server.py."""
from __future__ import annotations

import base64
import os
import secrets
import urllib.error
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from analysis.query import _histories_rest
from orchestrator.cli import main
from tests.support.sweeps import RAY_INIT

pytestmark = pytest.mark.slow

CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")

CONFIG = """
name: on-server
seeds: [0]
data: {image_size: 16, train_size: 256, test_size: 128, ood_size: 0}
model: {name: conv2, width: 4}
train: {epochs: 1, batch_size: 32, lr: 0.01}
pruning: {rate: 0.5, rounds: 2, rewind: init}
tracking: {uri: "URI", experiment: on-server}
"""


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


@pytest.fixture(scope="module")
def ray_with_credentials(ray_session, sweep_user):
    """Trials log from Ray workers, which take their environment from the node when Ray starts,
    not from the driver later: on a cluster every node carries the credentials (deploy/ puts the
    Secret into every pod). Here: restart the session's Ray with them in its environment."""
    username, password = sweep_user
    with pytest.MonkeyPatch.context() as patch:
        for name in CREDENTIAL_VARS:
            patch.delenv(name, raising=False)
        patch.setenv("MLFLOW_TRACKING_USERNAME", username)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", password)

        @ray_session.remote(num_cpus=0)
        def worker_user():
            return os.environ.get("MLFLOW_TRACKING_USERNAME")

        if ray_session.get(worker_user.remote()) != username:
            ray_session.shutdown()
            ray_session.init(**RAY_INIT)
        assert ray_session.get(worker_user.remote()) == username
        yield ray_session


def test_lth_sweep_logs_to_the_server_with_credentials_from_the_environment_only(
    server, sweep_user, ray_with_credentials, tmp_path, monkeypatch
):
    username, password = sweep_user
    config = CONFIG.replace("URI", server.url)
    assert password not in config and server.admin_password not in config
    (tmp_path / "sweep.yaml").write_text(config)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["sweep", "sweep.yaml"]) == 0
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the local default store

    client = MlflowClient(server.url)  # as the sweep's user, from the environment
    experiment = client.get_experiment_by_name("on-server")
    runs = {r.data.tags["lth.kind"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"sweep", "trunk", "lineage"}
    assert all(r.info.status == "FINISHED" for r in runs.values())
    lineage = runs["lineage"].info.run_id
    assert sorted(m.step for m in client.get_metric_history(lineage, "sparsity")) == [1, 2]
    assert {f.path for f in client.list_artifacts(lineage, "masks")} == {
        "masks/round_01.safetensors", "masks/round_02.safetensors"
    }
    plots = [f.path for f in client.list_artifacts(runs["sweep"].info.run_id, "plots")]
    assert "plots/accuracy_vs_sparsity.png" in plots and "plots/gradcam_vs_sparsity.png" in plots
    assert list((server.root / "artifacts").rglob("round_02.safetensors"))  # through the proxy

    # The sweep's user created the experiment, so it manages it; without credentials: refused.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.admin_password)
    from mlflow.server import get_app_client

    auth = get_app_client("basic-auth", tracking_uri=server.url)
    assert auth.get_user_permission(username, "experiment", experiment.experiment_id).permission == "MANAGE"
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    assert get(f"{server.url}/api/2.0/mlflow/runs/get?run_id={lineage}") == 401
