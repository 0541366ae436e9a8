"""Reading a sweep back from MLflow as a tidy pandas DataFrame: one row per (lineage, round).

Columns: the lineage's identity (`run_id`, `lineage`, `method`, `label`, `seed`, `trunk`, `status`,
`config`: its trunk configuration, analysis/configurations.py),
its config fields (the run's params, e.g. `pruning.rate`), `round`, every metric logged at that
step (`nonfinite/<metric>` = 1 where the logged value was NaN or infinite), and the dense trunk's value
of each metric as `dense/<metric>` (from the trunk run's step 0).
Works while a sweep runs: unfinished lineages simply have fewer rounds.

Metric histories are read in bulk: from a database URI with plain SQL on MLflow's tables
(analysis/query_sql.py), from an MLflow server through its bulk history endpoint (one request per
metric per 100 runs), otherwise run by run.
"""
from __future__ import annotations

import difflib
import math
import os
import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd

from lth_sweep.analysis import query_sql
from lth_sweep.analysis.configurations import with_configurations
from lth_sweep.analysis.metrics import NONFINITE_PREFIX
from lth_sweep.analysis.query_sql import RunRecord
from lth_sweep.trainables import record

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

BULK_RUNS = 100  # the server's limit of run ids per bulk history request


class SweepNotFound(LookupError):
    """No sweep of that name in the experiment (or no such experiment, or none with that sweep id)."""


@dataclass(frozen=True)
class SweepChoice:
    """One sweep of a name: its parent run (several configs may share a name)."""

    parent_run_id: str
    sweep_id: str  # the parent's `lth.id`: the hash of its config
    start_time: int  # ms since the epoch
    lineages: int  # its lineage runs
    status: str

    def line(self) -> str:
        started = datetime.fromtimestamp(self.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S") if self.start_time else "-"
        return f"{self.parent_run_id:<34}{self.sweep_id:<18}{started:<21}{self.lineages:>8}  {self.status}"


def _choices_table(choices: list[SweepChoice]) -> str:
    head = f"{'parent run':<34}{'sweep id':<18}{'started':<21}{'lineages':>8}  status"
    return "\n".join(["  " + head] + ["  " + choice.line() for choice in choices])


class SweepAmbiguous(LookupError):
    """Several sweeps share the name (different configs, so different sweep ids and parent runs)
    and nothing picked one; `choices` lists them, oldest first."""

    def __init__(self, sweep: str, choices: list[SweepChoice], selector: str | None = None):
        self.sweep, self.choices = sweep, choices
        if selector:
            self.head = f"{len(choices)} sweeps named {sweep!r} have a sweep id or parent run id starting {selector!r}"
        else:
            self.head = f"{len(choices)} sweeps are named {sweep!r}"
        self.table = _choices_table(choices)
        super().__init__(f"{self.head}; pick one by its sweep id or parent run id (sweep_id=, a prefix will do):\n{self.table}")


def sweep_choices(runs: list[RunRecord]) -> list[SweepChoice]:
    """The sweeps (parent runs) among a name's runs, oldest first, with their lineage counts."""
    lineages: dict[str, int] = defaultdict(int)
    for run in runs:
        if run.tags.get(record.KIND) == record.LINEAGE_KIND:
            lineages[run.tags.get(record.PARENT, "")] += 1
    parents = sorted((r for r in runs if r.tags.get(record.KIND) == record.SWEEP_KIND), key=lambda r: (r.start_time, r.run_id))
    return [SweepChoice(p.run_id, p.tags.get(record.ID, ""), p.start_time, lineages[p.run_id], p.status) for p in parents]


def pick_sweep(sweep: str, choices: list[SweepChoice], sweep_id: str | None, latest: bool) -> str | None:
    """The parent run id to read: the one whose sweep id or parent run id starts with `sweep_id`;
    without it the latest (`latest`) or the only one. None: the runs have no parent run."""
    if sweep_id is not None:
        picked = [c for c in choices if c.sweep_id.startswith(sweep_id) or c.parent_run_id.startswith(sweep_id)] if sweep_id else []
        if not picked:
            head = f"no sweep named {sweep!r} has a sweep id or parent run id starting {sweep_id!r}"
            table = _choices_table(choices) if choices else ""
            error = SweepNotFound(f"{head}; the sweeps of that name:\n{table}" if table else head)
            error.head, error.table = head, table  # for a caller that words its own message (the CLI)
            raise error
        if len(picked) > 1:
            raise SweepAmbiguous(sweep, picked, sweep_id)
        return picked[0].parent_run_id
    if not choices:
        return None
    if latest or len(choices) == 1:
        return choices[-1].parent_run_id
    raise SweepAmbiguous(sweep, choices)


def _histories_sql(store, run_ids: list[str], key: str) -> list[tuple[str, int, float]]:
    rows = store.get_metric_history_bulk(run_ids, key, max_results=None)
    return [(row.run_id, row.step, row.value) for row in rows]


def _histories_rest(store, run_ids: list[str], key: str) -> list[tuple[str, int, float]]:
    from mlflow.utils.rest_utils import http_request

    params = [("run_id", run_id) for run_id in run_ids] + [("metric_key", key), ("max_results", 25000)]
    response = http_request(store.get_host_creds(), "/ajax-api/2.0/mlflow/metrics/get-history-bulk", "GET", params=params)
    response.raise_for_status()
    return [(m["run_id"], int(m["step"]), float(m["value"])) for m in response.json().get("metrics", [])]


def _histories_one_by_one(client: MlflowClient, run_ids: list[str], key: str) -> list[tuple[str, int, float]]:
    return [(run_id, m.step, m.value) for run_id in run_ids for m in client.get_metric_history(run_id, key)]


def metric_histories(client: MlflowClient, run_ids: list[str], keys: set[str]) -> dict[str, dict[int, dict[str, float]]]:
    """run id -> step -> metric -> value (the last value logged at a step wins)."""
    store = client._tracking_client.store
    if hasattr(store, "get_metric_history_bulk"):
        fetch = lambda ids, key: _histories_sql(store, ids, key)  # noqa: E731
    elif hasattr(store, "get_host_creds"):
        fetch = lambda ids, key: _histories_rest(store, ids, key)  # noqa: E731
    else:
        fetch = lambda ids, key: _histories_one_by_one(client, ids, key)  # noqa: E731
    jobs = [(run_ids[i : i + BULK_RUNS], key) for key in sorted(keys) for i in range(0, len(run_ids), BULK_RUNS)]
    out: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(jobs)))) as pool:
        for (ids, key), rows in zip(jobs, pool.map(lambda job: fetch(*job), jobs)):
            for run_id, step, value in rows:
                out[run_id][step][key] = value
    return out


def _experiment_ids(client: MlflowClient, experiment: str | None) -> list[str]:
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise SweepNotFound(f"no MLflow experiment named {experiment!r}")
        return [found.experiment_id]
    return [e.experiment_id for e in client.search_experiments()]


def sweep_runs(client: MlflowClient, sweep: str, experiment: str | None = None) -> list:
    """The runs tagged with the sweep's name (in `experiment` when given); [] when there are none."""
    return record.search_all(client, _experiment_ids(client, experiment), f"tags.`{record.SWEEP}` = '{sweep}'", page=5000)


def _sweep_names(client: MlflowClient, experiment: str | None) -> set[str]:
    runs = record.search_all(client, _experiment_ids(client, experiment), f"tags.`{record.KIND}` = '{record.SWEEP_KIND}'")
    return {run.data.tags[record.SWEEP] for run in runs if record.SWEEP in run.data.tags}


def _not_found(sweep: str, experiment: str | None, names: set[str]) -> SweepNotFound:
    """SweepNotFound naming the store's sweeps whose names are close to `sweep` (a typo)."""
    close = difflib.get_close_matches(sweep, sorted(names), n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    where = f"experiment {experiment!r}" if experiment else "any experiment"
    return SweepNotFound(f"no sweep named {sweep!r} in {where}{hint}")


def _record(run) -> RunRecord:
    return RunRecord(
        run.info.run_id, run.info.status, run.info.start_time or 0, dict(run.data.tags), dict(run.data.params),
        dict(run.data.metrics),
    )


def _sweep_records(client: MlflowClient, engine, sweep: str, experiment: str | None) -> list[RunRecord]:
    if engine is None:
        records = [_record(run) for run in sweep_runs(client, sweep, experiment)]
        if not records:
            raise _not_found(sweep, experiment, _sweep_names(client, experiment))
        return records
    try:
        records = query_sql.sweep_records(engine, sweep, experiment)
    except LookupError as error:
        raise SweepNotFound(str(error)) from None
    if not records:
        raise _not_found(sweep, experiment, query_sql.sweep_names(engine, experiment))
    return records


@dataclass
class SweepRecord:
    """One sweep as MLflow holds it, read once: the runs of one parent and its lineages' metric
    histories. `frame()` is the tidy table; the end-of-sweep summary reads the same record."""

    parent: RunRecord | None
    trunks: dict[str, RunRecord]  # trunk id -> its run
    lineages: list[RunRecord]  # ordered by run id
    histories: dict[str, dict[int, dict[str, float]]]  # lineage run id -> step -> metric -> value

    def lineage(self, lineage_id: str) -> RunRecord | None:
        return next((run for run in self.lineages if run.tags.get(record.ID) == lineage_id), None)

    def rounds(self, run_id: str) -> dict[int, dict[str, float]]:
        """step -> metrics of the lineage's finished rounds (those with the round marker)."""
        steps = self.histories.get(run_id, {})
        return {step: metrics for step, metrics in sorted(steps.items()) if step >= 1 and record.ROUND_DONE in metrics}

    def frame(self) -> pd.DataFrame:
        rows = []
        for run in self.lineages:
            tags = run.tags
            params = {key: value for key, value in run.params.items() if key != record.SPEC}  # the fields are columns already
            trunk_id = tags.get(record.TRUNK)
            trunk = self.trunks.get(trunk_id)
            dense = {f"dense/{k}": v for k, v in (trunk.metrics if trunk else {}).items()}
            identity = {
                "run_id": run.run_id,
                "lineage": tags.get(record.ID),
                "method": tags.get(record.METHOD),
                "label": tags.get(record.LABEL, tags.get(record.METHOD)),
                "seed": int(params.get("trunk.seed", -1)),
                "trunk": trunk_id,
                "status": run.status,
            }
            for step, metrics in self.rounds(run.run_id).items():
                rows.append({**identity, **params, "round": step, **metrics, **_nonfinite(metrics), **dense})
        frame = pd.DataFrame(rows)
        if not frame.empty:
            frame = frame.sort_values(["label", "seed", "round"], kind="stable").reset_index(drop=True)
            frame = with_configurations(frame)  # named from the params as logged: `model.width=null`, not `=<NA>`
            params = {key for run in self.lineages for key in run.params if key != record.SPEC}
            for column in sorted(params & set(frame.columns)):
                frame[column] = typed(frame[column])
        return frame


def _client(uri: str):
    from mlflow.tracking import MlflowClient  # ~2 s of imports: only where MLflow's client reads

    return MlflowClient(uri)


def read_sweep(
    sweep: str, tracking_uri: str | None = None, experiment: str | None = None, latest: bool = True,
    parent_id: str | None = None, sql: bool = True, sweep_id: str | None = None,
) -> SweepRecord:
    """The runs of a sweep. Several sweeps may share a name (different configs: different sweep
    ids and parent runs): `sweep_id` picks the one whose sweep id (`lth.id`) or parent run id
    starts with it (SweepNotFound if none does, SweepAmbiguous if several do); `parent_id` picks
    one parent exactly; otherwise `latest` keeps the most recently started one, and
    `latest=False` raises SweepAmbiguous, listing them, when there are several. With a database URI
    it reads MLflow's tables directly (`analysis/query_sql.py`) unless `sql` is False; the result
    is the same."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    engine = query_sql.direct_engine(uri) if sql else None
    if engine is not None and not query_sql.schema_matches(engine):
        engine = None  # another schema than the installed MLflow's (query_sql logged it): its client reads it
    client = None if engine is not None else _client(uri)
    runs = _sweep_records(client, engine, sweep, experiment)
    parents = sorted((r for r in runs if r.tags.get(record.KIND) == record.SWEEP_KIND), key=lambda r: (r.start_time, r.run_id))
    if parent_id is None:
        parent_id = pick_sweep(sweep, sweep_choices(runs), sweep_id, latest)
    if parent_id is not None:
        runs = [r for r in runs if r.tags.get(record.PARENT) == parent_id]
    lineages = sorted((r for r in runs if r.tags.get(record.KIND) == record.LINEAGE_KIND), key=lambda r: r.run_id)
    trunks = {r.tags[record.ID]: r for r in runs if r.tags.get(record.KIND) == record.TRUNK_KIND}
    ids = [r.run_id for r in lineages]
    if engine is not None:
        histories = query_sql.histories(engine, ids)
    else:
        histories = metric_histories(client, ids, {key for r in lineages for key in r.metrics})
    parent = next((r for r in parents if r.run_id == parent_id), None)
    return SweepRecord(parent, trunks, lineages, histories)


def load_sweep(
    sweep: str, tracking_uri: str | None = None, experiment: str | None = None, latest: bool = True,
    parent_id: str | None = None, sql: bool = True, sweep_id: str | None = None,
) -> pd.DataFrame:
    """The tidy table of a sweep (see `read_sweep` for the arguments)."""
    return read_sweep(sweep, tracking_uri, experiment, latest, parent_id, sql, sweep_id).frame()


def _nonfinite(metrics: dict[str, float]) -> dict[str, float]:
    """`nonfinite/<metric>`: 1 where a round LOGGED a NaN or infinite value (a network that
    collapsed), so that the verdicts can tell it from a value never logged (also NaN in the frame)."""
    return {f"{NONFINITE_PREFIX}{key}": 1.0 for key, value in metrics.items() if not math.isfinite(value)}


_NULL = {"null", "None"}
_BOOL = {"True": True, "False": False, "true": True, "false": False}
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


def _parsed(text):
    """A param as logged (a string) as the value it stands for: None, a bool, an int, a float, or
    itself."""
    if not isinstance(text, str) or text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.fullmatch(text):
        return int(text)
    return float(text) if _FLOAT.fullmatch(text) else text


def typed(column: pd.Series) -> pd.Series:
    """A param column (MLflow keeps params as strings) as its values' type, so that a query such as
    "`pruning.reinit` == True" or "`pruning.rewind` == 125" compares like with like: bool, int or
    float when every value parses so (pandas' nullable dtypes where some are null); a column
    mixing kinds (`rewind`: "init" or an iteration) parses value by value; strings stay strings."""
    values = [_parsed(text) for text in column]
    present = [value for value in values if value is not None]
    kinds = {bool if isinstance(value, bool) else int if isinstance(value, int) else type(value) for value in present}
    missing = len(present) < len(values)
    if not present:
        return pd.Series([None] * len(values), index=column.index, dtype=object)
    if kinds == {str}:
        return column.mask(column.isin(_NULL))
    if kinds == {bool}:
        return pd.Series(values, index=column.index, dtype="boolean" if missing else bool)
    if kinds == {int}:
        return pd.Series(values, index=column.index, dtype="Int64" if missing else "int64")
    if kinds <= {int, float}:
        return pd.Series([math.nan if value is None else float(value) for value in values], index=column.index, dtype=float)
    return pd.Series(values, index=column.index, dtype=object)
