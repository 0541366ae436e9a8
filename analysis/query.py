"""Reading a sweep back from MLflow as a tidy pandas DataFrame: one row per (lineage, round).

Columns: the lineage's identity (`run_id`, `lineage`, `method`, `label`, `seed`, `trunk`, `status`),
its config fields (the run's params, e.g. `pruning.rate`), `round`, every metric logged at that
step, and the dense trunk's value of each metric as `dense/<metric>` (from the trunk run's step 0).
Works while a sweep runs: unfinished lineages simply have fewer rounds.

Metric histories are read in bulk (one request per metric per 100 runs) where the store allows it:
SQL stores directly, MLflow servers through their bulk history endpoint; otherwise run by run.
"""
from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from mlflow.tracking import MlflowClient

BULK_RUNS = 100  # the server's limit of run ids per bulk history request


class SweepNotFound(LookupError):
    """No sweep of that name in the experiment (or no such experiment)."""


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


def _experiment_id(client: MlflowClient, experiment: str | None, sweep: str) -> list[str]:
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise SweepNotFound(f"no MLflow experiment named {experiment!r}")
        return [found.experiment_id]
    return [e.experiment_id for e in client.search_experiments()]


def sweep_runs(client: MlflowClient, sweep: str, experiment: str | None = None) -> list:
    ids = _experiment_id(client, experiment, sweep)
    query = f"tags.`lth.sweep` = '{sweep}'"
    runs, token = [], None
    while True:
        page = client.search_runs(ids, query, max_results=5000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    if not runs:
        raise SweepNotFound(f"no sweep named {sweep!r} in {'experiment ' + repr(experiment) if experiment else 'any experiment'}")
    return runs


def load_sweep(
    sweep: str, tracking_uri: str | None = None, experiment: str | None = None, latest: bool = True,
    parent_id: str | None = None,
) -> pd.DataFrame:
    """The tidy table of a sweep. With several runs of the same sweep name (different configs),
    `latest` keeps the most recently started parent's lineages; `parent_id` picks one parent."""
    client = MlflowClient(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db")
    runs = sweep_runs(client, sweep, experiment)
    parents = sorted((r for r in runs if r.data.tags.get("lth.kind") == "sweep"), key=lambda r: r.info.start_time)
    if parent_id is None and latest and parents:
        parent_id = parents[-1].info.run_id
    if parent_id is not None:
        runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    lineages = [r for r in runs if r.data.tags.get("lth.kind") == "lineage"]
    trunks = {r.data.tags["lth.id"]: r for r in runs if r.data.tags.get("lth.kind") == "trunk"}
    keys = {key for r in lineages for key in r.data.metrics}
    histories = metric_histories(client, [r.info.run_id for r in lineages], keys)
    rows = []
    for run in lineages:
        tags, params = run.data.tags, run.data.params
        trunk_id = tags.get("lth.trunk")
        trunk = trunks.get(trunk_id)
        dense = {f"dense/{k}": v for k, v in (trunk.data.metrics if trunk else {}).items()}
        identity = {
            "run_id": run.info.run_id,
            "lineage": tags.get("lth.id"),
            "method": tags.get("lth.method"),
            "label": tags.get("lth.label", tags.get("lth.method")),
            "seed": int(params.get("trunk.seed", -1)),
            "trunk": trunk_id,
            "status": run.info.status,
        }
        for step, metrics in sorted(histories.get(run.info.run_id, {}).items()):
            if step < 1 or "sparsity" not in metrics:
                continue
            rows.append({**identity, **params, "round": step, **metrics, **dense})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values(["label", "seed", "round"], kind="stable").reset_index(drop=True)
        for column in frame.columns:
            if column.startswith(("pruning.", "trunk.")):
                frame[column] = _numeric(frame[column])
    return frame


def _numeric(column: pd.Series) -> pd.Series:
    converted = pd.to_numeric(column, errors="coerce")
    return converted if converted.notna().sum() == column.notna().sum() else column
