"""The sweep's MLflow runs, all created on the driver: one parent per sweep, one child per trunk
and per lineage, each found again by its stable id so reruns never duplicate a run."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow.tracking import MlflowClient

from trainables import record
from trainables.specs import Spec

PROBE_SECONDS = 5.0


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be used: no server answers, it refuses the credentials, or
    the URI names no store lth-sweep can use (an unknown scheme, MLflow's file store, a file that is
    not an MLflow database, a folder nothing can be created in)."""


DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
STORE_SCHEMES = "sqlite:///PATH/mlflow.db, http(s)://HOST:PORT (an MLflow server) or a database (postgresql://, mysql://, mssql://)"


def check_tracking(uri: str, timeout: float = PROBE_SECONDS, *, reading: bool = False, source: str = "") -> None:
    """Judges a tracking store in seconds, writing nothing, where MLflow's own client would retry
    for minutes (about 4, with backoff), create a store, or fail mid-sweep with a traceback: one
    request without retries to a server, a TCP probe for a database URI, for SQLite the file (an
    MLflow database, or a folder it can be created in), and the scheme itself. `reading`: the store
    must exist already (`lth query`, `lth tickets` never create one). `source`: the setting the
    URI came from, named in the message (e.g. "tracking.uri")."""
    where = f"{uri} ({source})" if source else uri
    try:
        parsed = urlparse(uri)
        scheme = parsed.scheme.lower()
        hostname, port = parsed.hostname, parsed.port
    except ValueError as error:
        raise TrackingUnavailable(f"MLflow tracking store {where}: not a valid URI ({error}); use {STORE_SCHEMES}") from None
    engine = scheme.split("+")[0]
    if scheme in ("http", "https"):
        if not hostname:
            raise TrackingUnavailable(f"MLflow tracking server {where}: the URI names no host")
        _probe_server(uri, timeout, where)
    elif engine == "sqlite":
        _check_sqlite(uri, parsed, reading, where)
    elif engine in DATABASE_PORTS:
        if not hostname:
            return  # a local socket: the database's client says what is wrong, at once
        port = port or DATABASE_PORTS[engine]
        try:
            socket.create_connection((hostname, port), timeout=timeout).close()
        except OSError as error:
            raise TrackingUnavailable(f"MLflow tracking store {where}: no database answers at {hostname}:{port} ({error})") from None
    elif scheme == "file" or not scheme or (len(scheme) == 1 and scheme.isalpha()):  # a path, or C:\\...
        said = "file:// is" if scheme == "file" else "not a URI (no scheme such as sqlite:/// or http://); as a path it is"
        raise TrackingUnavailable(
            f"MLflow tracking store {where}: {said} MLflow's file store, which MLflow refuses since 3.13 "
            f"(maintenance mode) and lth-sweep does not support; use {STORE_SCHEMES}"
        )
    elif scheme not in _other_store_schemes():
        raise TrackingUnavailable(f"MLflow tracking store {where}: unknown scheme {scheme!r}; use {STORE_SCHEMES}")


def _other_store_schemes() -> set[str]:
    """Schemes of MLflow's other tracking stores (databricks, and those of installed plugins)."""
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        registered = set(_tracking_store_registry._registry)
    except (ImportError, AttributeError):
        registered = {"databricks"}
    return registered - {"", "file", "databricks-uc", "uc"}  # MLflow refuses Unity Catalog as a tracking store


def sqlite_file(uri: str) -> Path | None:
    """The database file a `sqlite:///...` URI names (None for an in-memory or empty one)."""
    path = unquote(uri.split(":///", 1)[1].split("?")[0]) if ":///" in uri else ""
    return None if path in ("", ":memory:") else Path(path)


def _check_sqlite(uri: str, parsed, reading: bool, where: str) -> None:
    from orchestrator.preflight import cannot_create_in, sqlite_problem

    if parsed.netloc:
        raise TrackingUnavailable(
            f"MLflow tracking store {where}: a SQLite URI names no host: sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    file = sqlite_file(uri)
    if file is None:
        return
    if file.is_dir():
        raise TrackingUnavailable(f"MLflow tracking store {where}: {file} is a folder, not a database file")
    if file.exists():
        problem = sqlite_problem(file, reading)
        if problem is None and not reading and not os.access(file, os.W_OK):
            problem = f"{file} is read-only"
    elif reading:
        problem = f"no database at {file} (reading never creates a store)"
    elif not file.parent.is_dir():
        what = "is not a folder" if file.parent.exists() else "does not exist"
        problem = f"directory {file.parent} {what}"
    else:
        problem = None
    if problem is None and not reading:  # SQLite creates the database, and its journal beside it
        problem = cannot_create_in(file.parent)
    if problem:
        raise TrackingUnavailable(f"MLflow tracking store {where}: {problem}")


def _probe_server(uri: str, timeout: float, where: str | None = None) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    where = where or uri
    try:
        response = http_request(
            get_default_host_creds(uri), "/api/2.0/mlflow/experiments/search", "GET",
            params={"max_results": 1}, max_retries=0, timeout=timeout, raise_on_status=False,
        )
    except (MlflowException, OSError) as error:  # MLflow wraps requests' connection errors
        text = str(error).lower()
        reason = {"refused": "connection refused", "timed out": f"no answer within {timeout:.0f} s"}
        reason = next((said for key, said in reason.items() if key in text), text[:300])
        raise TrackingUnavailable(f"MLflow tracking server {where} is unreachable ({reason}); is it running?") from None
    if response.status_code in (401, 403):
        raise TrackingUnavailable(
            f"MLflow tracking server {where} refused the credentials (HTTP {response.status_code}); "
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if response.status_code >= 500:
        raise TrackingUnavailable(f"MLflow tracking server {where} answers HTTP {response.status_code}: {response.text[:200]}")


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


def finished_lineages(uri: str, experiment: str, sweep_name: str, sweep_id: str) -> set[str]:
    """The lineage ids of a sweep that MLflow holds as FINISHED, read without writing anything
    (no experiment or run is created): a sweep whose lineages all finished needs no Ray."""
    if uri.startswith("sqlite:"):
        file = sqlite_file(uri)
        if file is None or not file.is_file():
            return set()  # nothing stored yet, and MLflow's client would create the database
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        return set()
    same_sweep = f"tags.`{record.SWEEP}` = '{sweep_name}'"
    parents = client.search_runs(
        [found.experiment_id], f"{same_sweep} and tags.`{record.KIND}` = '{record.SWEEP_KIND}' and tags.`{record.ID}` = '{sweep_id}'",
        max_results=1, order_by=["attributes.start_time ASC"],
    )
    if not parents:
        return set()
    query = (
        f"{same_sweep} and tags.`{record.PARENT}` = '{parents[0].info.run_id}' "
        f"and tags.`{record.KIND}` = '{record.LINEAGE_KIND}' and attributes.status = 'FINISHED'"
    )
    finished, token = set(), None
    while True:
        page = client.search_runs([found.experiment_id], query, max_results=1000, page_token=token)
        finished |= {run.data.tags[record.ID] for run in page}
        token = page.token
        if not token:
            return finished
