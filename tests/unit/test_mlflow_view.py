"""The comparison view a sweep publishes for MLflow's UI, written to a real MLflow store on SQLite:
an experiment tag MLflow's UI reads by the URL's share key, holding the lineage filter, the grouping
by method and every run shown; written again unchanged when a sweep is summarised again. (The
browser reading it: tests/infrastructure/test_mlflow_ui.py.)"""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator.mlflow_runs import SweepTracker
from lth_sweep.orchestrator.mlflow_view import SHARE_TAG_PREFIX, share_key
from lth_sweep.trainables import record


def test_the_sweep_publishes_a_view_grouped_by_method_over_its_lineages(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SweepTracker(uri, "views", "quickstart", "abc123")
    url = tracker.comparison_url()
    assert tracker.comparison_url() == url  # idempotent: a second summary rewrites the same tag

    fragment = urlsplit(urlsplit(url).fragment)
    assert fragment.path == f"/experiments/{tracker.experiment_id}/runs"
    query = parse_qs(fragment.query)
    assert query["viewStateShareKey"] == [share_key(tracker.parent_id)]
    assert query["compareRunsMode"] == ["CHART"]
    # a search facet in the URL would make MLflow ignore the shared view
    assert not {"searchFilter", "orderByKey", "startTime", "lifecycleFilter"} & set(query)

    tags = MlflowClient(uri).get_experiment(tracker.experiment_id).tags
    view = json.loads(tags[SHARE_TAG_PREFIX + share_key(tracker.parent_id)])
    assert view["searchFilter"] == (
        f"tags.`mlflow.parentRunId` = '{tracker.parent_id}' and tags.`lth.kind` = '{record.LINEAGE_KIND}'"
    )
    assert view["groupBy"] == {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": record.LABEL}]}
    assert view["runsHiddenMode"] == "SHOW_ALL"


def test_a_tracking_server_serves_its_own_ui(tmp_path):
    tracker = SweepTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "views", "q", "abc")
    assert tracker.comparison_url().startswith("http://127.0.0.1:5000/#/experiments/")
    tracker.uri = "http://mlflow.lab:5000/"
    assert tracker.comparison_url().startswith("http://mlflow.lab:5000/#/experiments/")
