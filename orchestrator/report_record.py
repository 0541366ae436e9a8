"""What `lth report` says about a sweep, read from MLflow once: the parent run, the tidy table,
the verdicts and the summary rows recomputed from it (so the report always matches the data), and
the model versions registered from the sweep's lineages."""
from __future__ import annotations

from dataclasses import dataclass, field

from lth_sweep.analysis.query import SweepRecord
from lth_sweep.trainables import record
from lth_sweep.trainables.specs import LineageSpec

REGISTRY_IDS_PER_SEARCH = 100  #: run ids per `run_id IN (...)` filter, as the query layer's bulk reads


@dataclass(frozen=True)
class RecordedPlan:
    """The part of a `SweepPlan` the summary reads (`summary.collect_rows`), rebuilt from the
    canonical spec every lineage run keeps (`record.SPEC`), in the order the runs were created."""

    lineages: list[LineageSpec]


@dataclass
class SweepFacts:
    name: str
    uri: str
    parent: object  # mlflow.entities.Run: the sweep's run, with its end time and experiment
    experiment: str
    sweep: SweepRecord
    frame: object  # pandas.DataFrame, `sweep.frame()`
    verdicts: dict | None  # analysis.sweep_verdicts.judge on the default metrics; None: no round finished
    verdicts_failed: str  # why the verdicts could not be computed, or ""
    rows: list[dict]  # summary.collect_rows, one per lineage whose spec could be read
    left_out: list[str] = field(default_factory=list)  # lineage runs not in the summary, and why
    registered: list = field(default_factory=list)  # mlflow ModelVersion whose source run is a lineage of the sweep
    registry_failed: str = ""  # why the model registry could not be read, or ""

    @property
    def sweep_id(self) -> str:
        return self.parent.data.tags.get(record.ID, "")

    @property
    def parent_id(self) -> str:
        return self.parent.info.run_id


def read_facts(sweep: SweepRecord, uri: str) -> SweepFacts:
    """Everything the report shows, from the sweep's record (`analysis.query.read_sweep`)."""
    from mlflow.tracking import MlflowClient

    from lth_sweep.orchestrator.summary import collect_rows

    client = MlflowClient(uri)
    parent = client.get_run(sweep.parent.run_id)
    frame = sweep.frame()
    verdicts, failed = _verdicts(frame)
    plan, left_out = recorded_plan(sweep)
    rows = collect_rows(plan, sweep, frame, verdicts)
    registered, registry_failed = registered_versions(client, [run.run_id for run in sweep.lineages])
    return SweepFacts(
        name=parent.data.tags.get(record.SWEEP, ""), uri=uri, parent=parent,
        experiment=client.get_experiment(parent.info.experiment_id).name, sweep=sweep, frame=frame,
        verdicts=verdicts, verdicts_failed=failed, rows=rows, left_out=left_out,
        registered=registered, registry_failed=registry_failed,
    )


def _verdicts(frame) -> tuple[dict | None, str]:
    """`lth tickets`' verdicts on the registry's default metrics, as the sweep's end logs them."""
    from lth_sweep.analysis.sweep_verdicts import PooledLineages, judge_defaults

    if frame.empty:
        return None, "no round of the sweep has finished yet"
    try:
        return judge_defaults(frame), ""
    except PooledLineages as error:
        return None, str(error)


def recorded_plan(sweep: SweepRecord) -> tuple[RecordedPlan, list[str]]:
    """The lineages' specs, and the runs left out: no spec param (one too long for MLflow), or a
    spec this lth-sweep rebuilds to another id (a version whose identity rules differed)."""
    from pydantic import ValidationError

    specs, left_out = [], []
    for run in sorted(sweep.lineages, key=lambda run: (run.start_time, run.run_id)):
        name = run.tags.get("mlflow.runName", run.run_id)
        if record.SPEC not in run.params:
            left_out.append(f"{name} (run {run.run_id}): no `{record.SPEC}` param")
            continue
        try:
            spec = LineageSpec.model_validate_json(run.params[record.SPEC], context={"check_paths": False})
        except ValidationError as error:
            left_out.append(f"{name} (run {run.run_id}): its spec is not one this lth-sweep reads ({error.error_count()} errors)")
            continue
        if spec.id != run.tags.get(record.ID):
            left_out.append(f"{name} (run {run.run_id}): its spec hashes to {spec.id}, not {run.tags.get(record.ID)}")
            continue
        specs.append(spec)
    return RecordedPlan(specs), left_out


def registered_versions(client, run_ids: list[str]) -> tuple[list, str]:
    """The registry's model versions whose source run is one of `run_ids`; ([], why) when the
    registry cannot be read (a server without one)."""
    from mlflow.exceptions import MlflowException

    found = []
    try:
        for start in range(0, len(run_ids), REGISTRY_IDS_PER_SEARCH):
            ids = ", ".join(f"'{run_id}'" for run_id in run_ids[start : start + REGISTRY_IDS_PER_SEARCH])
            found += client.search_model_versions(f"run_id IN ({ids})")
    except MlflowException as error:
        return [], error.message.splitlines()[0]
    return sorted(found, key=lambda version: (version.name, int(version.version))), ""
