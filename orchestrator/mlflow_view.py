"""The view of a sweep that MLflow's UI opens on: the experiment's chart view with the sweep's
lineage runs only, grouped by method (`lth.label`), every run counted.

MLflow's UI restores a view from an experiment tag `mlflow.sharedViewState.<key>` named by the
URL's `viewStateShareKey` (what its own "Share" button writes). The tag's value is the view as
JSON: the search facets (filter, order, time range) and the UI state (grouping, which runs are
drawn). Grouping cannot be put in a URL any other way."""
from __future__ import annotations

import json
from urllib.parse import urlencode

from lth_sweep.trainables import record

SHARE_TAG_PREFIX = "mlflow.sharedViewState."
AGGREGATE = "average"  # MLflow draws the group's mean with a min-max band


def lineage_filter(parent_id: str) -> str:
    return f"tags.`{record.PARENT}` = '{parent_id}' and tags.`{record.KIND}` = '{record.LINEAGE_KIND}'"


def view_state(parent_id: str) -> dict:
    return {
        "searchFilter": lineage_filter(parent_id),
        "orderByKey": "attributes.start_time",
        "orderByAsc": True,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "groupBy": {"aggregateFunction": AGGREGATE, "groupByKeys": [{"mode": "tag", "groupByData": record.LABEL}]},
        "groupsExpanded": {},
        "useGroupedValuesInCharts": True,
        "runsHiddenMode": "SHOW_ALL",  # MLflow's default draws the first 10 runs only
        "hideEmptyCharts": True,
        "chartsSearchFilter": "^test/acc$",  # a regular expression: not se/test/acc too
    }


def share_key(parent_id: str) -> str:
    return f"lth-sweep-{parent_id}"


def publish_comparison_view(client, experiment_id: str, parent_id: str) -> str:
    """Writes the sweep's view into its experiment (idempotent) and returns its share key."""
    key = share_key(parent_id)
    client.set_experiment_tag(experiment_id, SHARE_TAG_PREFIX + key, json.dumps(view_state(parent_id)))
    return key


def comparison_url(server: str, experiment_id: str, parent_id: str) -> str:
    """The chart view comparing the sweep's methods (the view `publish_comparison_view` wrote)."""
    query = urlencode({"viewStateShareKey": share_key(parent_id), "compareRunsMode": "CHART", "workflowType": "machine_learning"})
    return f"{server}/#/experiments/{experiment_id}/runs?{query}"
