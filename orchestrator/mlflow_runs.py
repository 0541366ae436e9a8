"""The sweep's MLflow runs, all created on the driver: one parent per sweep, one child per trunk
and per lineage, each found again by its stable id so reruns never duplicate a run."""
from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow.tracking import MlflowClient

from trainables import record
from trainables.specs import Spec

PROBE_SECONDS = 5.0


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be used: no server answers, or it refuses the credentials."""


def check_tracking(uri: str, timeout: float = PROBE_SECONDS) -> None:
    """Fails in seconds where MLflow's own client would retry for minutes (about 4, with backoff):
    one request without retries to a server, a directory check for SQLite, a TCP probe for a
    database URI."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        _probe_server(uri, timeout)
    elif parsed.scheme == "sqlite":
        path = unquote(uri.removeprefix("sqlite:///").split("?")[0])
        folder = Path(path).parent
        if path not in ("", ":memory:") and not folder.is_dir():
            raise TrackingUnavailable(f"MLflow tracking store {uri}: directory {folder} does not exist")
    elif parsed.hostname:  # postgresql://, mysql://, ...: the database itself
        port = parsed.port or {"postgresql": 5432, "mysql": 3306, "mssql": 1433}.get(parsed.scheme.split("+")[0])
        if port is None:
            return
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        except OSError as error:
            raise TrackingUnavailable(f"MLflow tracking store {uri}: no database answers at {parsed.hostname}:{port} ({error})") from None


def _probe_server(uri: str, timeout: float) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            get_default_host_creds(uri), "/api/2.0/mlflow/experiments/search", "GET",
            params={"max_results": 1}, max_retries=0, timeout=timeout, raise_on_status=False,
        )
    except (MlflowException, OSError) as error:  # MLflow wraps requests' connection errors
        text = str(error).lower()
        reason = {"refused": "connection refused", "timed out": f"no answer within {timeout:.0f} s"}
        reason = next((said for key, said in reason.items() if key in text), text[:300])
        raise TrackingUnavailable(f"MLflow tracking server {uri} is unreachable ({reason}); is it running?") from None
    if response.status_code in (401, 403):
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} refused the credentials (HTTP {response.status_code}); "
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if response.status_code >= 500:
        raise TrackingUnavailable(f"MLflow tracking server {uri} answers HTTP {response.status_code}: {response.text[:200]}")


def flatten(values: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = "null" if value is None else str(value)
    return flat


class SweepTracker:
    def __init__(self, uri: str, experiment: str, sweep_name: str, sweep_id: str):
        self.client = MlflowClient(uri)
        self.uri = uri
        self.sweep_name = sweep_name
        found = self.client.get_experiment_by_name(experiment)
        if found is not None and found.lifecycle_stage == "deleted":
            raise ValueError(
                f"MLflow experiment {experiment!r} is deleted; restore it or set tracking.experiment to another name"
            )
        # The kind tag makes MLflow's UI open the experiment in its model-training view, not GenAI.
        kind = {"mlflow.experimentKind": "custom_model_development"}
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment, tags=kind)
        self._known: dict | None = None  # the parent's children, by (kind, lth id)
        self._params: dict[str, set[str]] = {}  # run id -> the params it has
        self.parent = self._get_or_create(record.SWEEP_KIND, sweep_id, sweep_name, parent_id=None)

    def _find(self, kind: str, lth_id: str, parent_id: str | None):
        query = f"tags.`{record.KIND}` = '{kind}' and tags.`{record.ID}` = '{lth_id}' and tags.`{record.SWEEP}` = '{self.sweep_name}'"
        if parent_id:
            query += f" and tags.`{record.PARENT}` = '{parent_id}'"
        runs = self.client.search_runs([self.experiment_id], query, max_results=1, order_by=["attributes.start_time ASC"])
        return runs[0] if runs else None

    def _children(self) -> dict[tuple[str, str], object]:
        """(kind, lth id) -> run for every child of the parent: one paged search, not one per child
        (with 1,000 lineages on a server, that saves minutes before the first trial starts)."""
        if self._known is None:
            query = f"tags.`{record.PARENT}` = '{self.parent_id}' and tags.`{record.SWEEP}` = '{self.sweep_name}'"
            runs, token = [], None
            while True:
                page = self.client.search_runs([self.experiment_id], query, max_results=1000, page_token=token)
                runs, token = runs + list(page), page.token
                if not token:
                    break
            self._known = {}
            for run in sorted(runs, key=lambda r: r.info.start_time, reverse=True):  # the oldest wins, as in _find
                self._known[(run.data.tags.get(record.KIND), run.data.tags.get(record.ID))] = run
        return self._known

    def _get_or_create(self, kind, lth_id, run_name, parent_id, tags=None, params=None):
        run = self._children().get((kind, lth_id)) if parent_id else self._find(kind, lth_id, None)
        if run is None:
            all_tags = {record.KIND: kind, record.ID: lth_id, record.SWEEP: self.sweep_name, **(tags or {})}
            if parent_id:
                all_tags[record.PARENT] = parent_id
            run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=run_name)
            if parent_id:
                self._known[(kind, lth_id)] = run
        # Also for a found run: a driver killed between creating it and logging its params left none.
        have = self._params.setdefault(run.info.run_id, set(run.data.params))
        have.update(record.log_params(self.client, run.info.run_id, params or {}, have))
        return run

    @property
    def parent_id(self) -> str:
        return self.parent.info.run_id

    def log_sweep_params(self, params: dict[str, str]) -> None:
        record.log_params(self.client, self.parent_id, params, set(self.client.get_run(self.parent_id).data.params))

    def child(self, kind: str, spec: Spec, run_name: str, tags: dict | None = None):
        return self._get_or_create(
            kind, spec.id, run_name, self.parent_id, tags=tags, params=flatten(spec.model_dump(mode="json"))
        )

    def fail(self, run_id: str, error: str) -> None:
        """Ends a run FAILED with the reason in its error tag (what the summary shows)."""
        self.set_tags(run_id, {record.ERROR: error[: record.TAG_CHARS]})
        self.client.set_terminated(run_id, "FAILED")

    def reopen(self, run_id: str) -> None:
        """A run picked up again after an interrupted attempt is RUNNING once more."""
        self.client.update_run(run_id, status="RUNNING")

    def log_missing_metrics(self, run_id: str, metrics: dict[tuple[str, int], float]) -> None:
        """Logs (key, step) values the run does not have yet, so a rerun never logs a step twice."""
        have = {(key, m.step) for key in {k for k, _ in metrics} for m in self.client.get_metric_history(run_id, key)}
        by_step: dict[int, dict[str, float]] = {}
        for (key, step), value in metrics.items():
            if (key, step) not in have:
                by_step.setdefault(step, {})[key] = value
        for step, values in sorted(by_step.items()):
            record.log_metrics(self.client, run_id, step, values)

    def describe(self, run_id: str, markdown: str) -> None:
        """The run's description in the UI."""
        self.set_tags(run_id, {record.DESCRIPTION: markdown})

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        record.set_tags(self.client, run_id, tags)

    def run_url(self, run_id: str, server: str = "http://127.0.0.1:5000") -> str:
        # The query parameter opens MLflow's model-training view; without it a fresh browser
        # lands in the GenAI view, whatever the experiment's tags say.
        return f"{server}/#/experiments/{self.experiment_id}/runs/{run_id}?workflowType=machine_learning"
