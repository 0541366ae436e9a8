"""The sweep's MLflow runs, all created on the driver: one parent per sweep, one child per trunk
and per lineage, each found again by its stable id so reruns never duplicate a run."""
from __future__ import annotations

import re

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator import mlflow_view
from lth_sweep.orchestrator.mlflow_inputs import log_dataset_inputs
from lth_sweep.orchestrator.tracking_store import sqlite_file
from lth_sweep.trainables import provenance, record
from lth_sweep.trainables.specs import Spec


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
        self.experiment_id = found.experiment_id if found else self._create_experiment(experiment)
        self._known: dict | None = None  # the parent's children, by (kind, lth id)
        self._params: dict[str, set[str]] = {}  # run id -> the params it has
        self._tags: dict[str, dict[str, str]] = {}  # run id -> its tags when found or created
        self._created: set[str] = set()  # run ids this driver created (RUNNING, nothing to reopen)
        self.provenance = provenance.creation_tags()  # what made the runs this driver creates
        self.parent = self._get_or_create(record.SWEEP_KIND, sweep_id, sweep_name, parent_id=None)
        if self.parent.info.run_id in self._created:
            self.parent = self._keep_the_oldest_parent(sweep_id)

    def _create_experiment(self, name: str) -> str:
        # The kind tag makes MLflow's UI open the experiment in its model-training view, not GenAI.
        try:
            return self.client.create_experiment(
                name, artifact_location=artifact_location(self.uri, name), tags={"mlflow.experimentKind": "custom_model_development"},
            )
        except MlflowException:  # another driver created it meanwhile
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _keep_the_oldest_parent(self, sweep_id: str):
        """Two drivers that started the sweep at once may each have created its parent: the
        oldest is the sweep's (both see it so), the other is deleted by its creator; the lease
        (`orchestrator/lease.py`) then lets one of them run."""
        oldest = self._find_parent(sweep_id)
        if oldest.info.run_id != self.parent.info.run_id:
            self.client.delete_run(self.parent.info.run_id)
            self._created.discard(self.parent.info.run_id)
            self._tags[oldest.info.run_id] = oldest.data.tags
            self._params[oldest.info.run_id] = set(oldest.data.params)
        return oldest

    def _find_parent(self, sweep_id: str):
        return oldest_parent(self.client, self.experiment_id, self.sweep_name, sweep_id)

    def _children(self) -> dict[tuple[str, str], object]:
        """(kind, lth id) -> run for every child of the parent: one paged search, not one per child
        (with 1,000 lineages on a server, that saves minutes before the first trial starts)."""
        if self._known is None:
            query = f"tags.`{record.PARENT}` = '{self.parent_id}' and tags.`{record.SWEEP}` = '{self.sweep_name}'"
            runs = record.search_all(self.client, [self.experiment_id], query)
            self._known = {}
            for run in sorted(runs, key=lambda r: r.info.start_time, reverse=True):  # the oldest wins, as for the parent
                self._known[(run.data.tags.get(record.KIND), run.data.tags.get(record.ID))] = run
        return self._known

    def _get_or_create(self, kind, lth_id, run_name, parent_id, tags=None, params=None):
        run = self._children().get((kind, lth_id)) if parent_id else self._find_parent(lth_id)
        if run is None:
            all_tags = {**self.provenance, record.KIND: kind, record.ID: lth_id, record.SWEEP: self.sweep_name, **(tags or {})}
            if parent_id:
                all_tags[record.PARENT] = parent_id
            run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=run_name)
            self._created.add(run.info.run_id)
            if parent_id:
                self._known[(kind, lth_id)] = run
        else:  # a run made before a tag existed (or a colour changed) gets it now
            changed = {key: value for key, value in (tags or {}).items() if run.data.tags.get(key) != value}
            if changed:
                record.set_tags(self.client, run.info.run_id, changed)
        self._tags[run.info.run_id] = run.data.tags
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
        params = flatten(spec.model_dump(mode="json"))  # one param per field, to filter and compare in the UI
        if len(spec.canonical()) <= record.PARAM_CHARS:  # and the whole spec, which export rebuilds from
            params[record.SPEC] = spec.canonical()
        run = self._get_or_create(kind, spec.id, run_name, self.parent_id, tags=tags, params=params)
        log_dataset_inputs(self.client, run, spec)  # also for a found run: one logged before this existed has none
        return run

    def still_running(self) -> list:
        """The sweep's child runs whose status is still RUNNING (after an interruption or a crash)."""
        query = f"tags.`{record.PARENT}` = '{self.parent_id}' and attributes.status = 'RUNNING'"
        return record.search_all(self.client, [self.experiment_id], query)

    def fail(self, run_id: str, error: str) -> None:
        """Ends a run FAILED with the reason in its error tag (what the summary shows)."""
        self.set_tags(run_id, {record.ERROR: error[: record.TAG_CHARS]})
        self.client.set_terminated(run_id, "FAILED")

    def reopen(self, run_id: str) -> None:
        """A run picked up again after an interrupted attempt is RUNNING once more. It keeps the
        tags of its creation; where this attempt runs other versions, its notes say which. A run
        this driver created is running already: nothing to do (one write fewer per lineage)."""
        if run_id in self._created:
            return
        self.client.update_run(run_id, status="RUNNING")
        created = self._tags.get(run_id) or self.client.get_run(run_id).data.tags
        changes = provenance.version_changes(created, self.provenance)
        if changes:
            from lth_sweep.trainables.run_logger import RunLogger  # torch: not before the store is judged (cli)

            RunLogger(self.uri, run_id).note(None, [f"continued by an attempt with {', '.join(changes)}"])

    def created_here(self, run_id: str) -> bool:
        """Whether this driver created the run (it has logged nothing yet)."""
        return run_id in self._created

    def existing(self, kind: str, lth_id: str):
        """The sweep's child run of this kind and id, or None where there is none yet."""
        return self._children().get((kind, lth_id))

    def discard(self, run) -> None:
        """Deletes a child run (MLflow's soft delete: restorable in the UI, skipped by every
        search), so that the next `child` call for it creates a new one."""
        self.client.delete_run(run.info.run_id)
        self._children().pop((run.data.tags[record.KIND], run.data.tags[record.ID]), None)

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

    def ui_server(self) -> str:
        """Where MLflow's UI serves this store: the tracking server itself, else `lth ui`'s default."""
        return self.uri.rstrip("/") if self.uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"

    def run_url(self, run_id: str) -> str:
        # The query parameter opens MLflow's model-training view; without it a fresh browser
        # lands in the GenAI view, whatever the experiment's tags say.
        return f"{self.ui_server()}/#/experiments/{self.experiment_id}/runs/{run_id}?workflowType=machine_learning"

    def comparison_url(self, group_key: str = record.LABEL) -> str:
        """Publishes the view comparing this sweep's methods, grouped by the tag `group_key`, and
        returns its URL."""
        mlflow_view.publish_comparison_view(self.client, self.experiment_id, self.parent_id, group_key)
        return mlflow_view.comparison_url(self.ui_server(), self.experiment_id, self.parent_id)


def finished_lineages(uri: str, experiment: str, sweep_name: str, sweep_id: str) -> set[str]:
    """The lineage ids of a sweep that MLflow holds as FINISHED (see `finished_runs`)."""
    return {lth_id for kind, lth_id in finished_runs(uri, experiment, sweep_name, sweep_id) if kind == record.LINEAGE_KIND}


def artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment of a SQLite store keeps its artifacts: `mlruns/<experiment>` beside
    the database, wherever `lth` runs (MLflow's default is `./mlruns` of the working folder), so
    the database and its folder are the whole store (`lth store copy|move` relocates both)."""
    file = sqlite_file(uri) if uri.startswith("sqlite:") else None
    if file is None:
        return None  # a server or database: the server's own artifact root
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment).strip("-.") or "experiment"
    return str(file.parent.absolute() / "mlruns" / slug)


def find_parent(uri: str, experiment: str, sweep_name: str, sweep_id: str):
    """The sweep's parent run, read without writing anything (no experiment, run or SQLite
    database is created), or None where there is none yet."""
    if uri.startswith("sqlite:"):
        file = sqlite_file(uri)
        if file is None or not file.is_file():
            return None  # nothing stored yet, and MLflow's client would create the database
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        return None
    return oldest_parent(client, found.experiment_id, sweep_name, sweep_id)


def oldest_parent(client, experiment_id: str, sweep_name: str, sweep_id: str):
    """The sweep's parent run: the oldest of those tagged with its name and id (two drivers that
    started it at once may each have made one), the run id breaking a tie within a millisecond."""
    query = f"tags.`{record.SWEEP}` = '{sweep_name}' and tags.`{record.KIND}` = '{record.SWEEP_KIND}' and tags.`{record.ID}` = '{sweep_id}'"
    parents = client.search_runs([experiment_id], query, max_results=100)
    return min(parents, key=lambda run: (run.info.start_time or 0, run.info.run_id)) if parents else None


def finished_runs(uri: str, experiment: str, sweep_name: str, sweep_id: str) -> dict[tuple[str, str], dict[str, str]]:
    """(kind, lth id) -> tags of each trunk and lineage of a sweep that MLflow holds as FINISHED,
    read without writing anything: a sweep whose lineages all finished needs no Ray, unless some
    are to be made again (`tracking.rerun_stale`)."""
    parent = find_parent(uri, experiment, sweep_name, sweep_id)
    if parent is None:
        return {}
    client = MlflowClient(uri)
    query = f"tags.`{record.SWEEP}` = '{sweep_name}' and tags.`{record.PARENT}` = '{parent.info.run_id}' and attributes.status = 'FINISHED'"
    runs = record.search_all(client, [parent.info.experiment_id], query)
    return {(run.data.tags[record.KIND], run.data.tags[record.ID]): run.data.tags for run in runs}


def stored_progress(uri: str, experiment: str, sweep_name: str, sweep_id: str, lineages: int) -> str:
    """One line for a dry run: whether the store holds this sweep already, and how much of it has
    finished (read only; a store that cannot be read says so, it is not judged here)."""
    from lth_sweep.orchestrator.tracking_store import TrackingUnavailable, check_tracking

    file = sqlite_file(uri) if uri.startswith("sqlite:") else None
    if file is not None and not file.exists():
        return f"store {uri}: not created yet; running the sweep creates it and starts the sweep"
    try:
        check_tracking(uri, reading=True)
        parent = find_parent(uri, experiment, sweep_name, sweep_id)
    except (TrackingUnavailable, OSError, MlflowException) as error:
        return f"store {uri}: not read ({str(error).splitlines()[0][:200]})"
    if parent is None:
        return f"store {uri}: this sweep is not in it yet; running it starts it"
    finished = finished_lineages(uri, experiment, sweep_name, sweep_id)
    return (f"store {uri}: this sweep is in it (parent run {parent.info.run_id}), {len(finished)}/{lineages} lineages "
            "finished; running it " + ("summarises it again" if len(finished) >= lineages else "continues it"))
