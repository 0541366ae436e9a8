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
#: The charts of the view: the headline accuracy and the headline explanation metric, each against
#: the pruning's sparsity (logged every round as `record.ROUND_DONE`) rather than the round number.
CHART_METRICS = ("test/acc", "xai/gradcam_rank_corr")
X_AXIS_METRIC = record.ROUND_DONE
SECTION = "lth-sweep-methods"  # the uuid of the view's own chart section
#: One card per row, as wide as the chart area (MLflow's default of 3 a row leaves ~300 px and a
#: legend cut to 4 of 6 methods), and taller than MLflow's 360 px.
COLUMNS, CARD_HEIGHT = 1, 480
# MLflow's UI fetches the parent runs of the runs a search found when the runs are ordered by start
# time (its default), and counts and groups them with the rest ("13 matching runs", a group
# "Unassigned"); ordered by name it fetches nothing more.
ORDER_BY = "tags.`mlflow.runName`"


def lineage_filter(parent_id: str) -> str:
    return f"tags.`{record.PARENT}` = '{parent_id}' and tags.`{record.KIND}` = '{record.LINEAGE_KIND}'"


def chart_card(metric: str) -> dict:
    """A line chart of `metric` against the metric `sparsity` (MLflow's RunsChartsLineCardConfig)."""
    return {
        "type": "LINE", "uuid": f"lth-sweep-{metric}", "metricSectionId": SECTION, "isGenerated": False, "deleted": False,
        "metricKey": metric, "selectedMetricKeys": [metric], "displayName": metric,
        "xAxisKey": "metric", "selectedXAxisMetricKey": X_AXIS_METRIC, "useGlobalXaxisKey": False,
        "xAxisScaleType": "linear", "scaleType": "linear", "range": {}, "yAxisKey": "metric", "yAxisExpressions": [],
        "lineSmoothness": 0, "useGlobalLineSmoothing": False, "ignoreOutliers": False, "displayPoints": True,
    }


def view_state(parent_id: str, group_key: str = record.LABEL) -> dict:
    """`group_key`: the tag the lineages are grouped by, whose colours tell the sweep's labels
    apart (`analysis.colors.series_key`)."""
    return {
        "searchFilter": lineage_filter(parent_id),
        "orderByKey": ORDER_BY,
        "orderByAsc": True,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "groupBy": {"aggregateFunction": AGGREGATE, "groupByKeys": [{"mode": "tag", "groupByData": group_key}]},
        "groupsExpanded": {},
        "useGroupedValuesInCharts": True,
        "runsHiddenMode": "SHOW_ALL",  # MLflow's default draws the first 10 runs only
        "hideEmptyCharts": True,
        "compareRunCharts": [chart_card(metric) for metric in CHART_METRICS],
        "compareRunSections": [{
            "uuid": SECTION, "name": "methods compared", "display": True, "isReordered": True, "deleted": False,
            "isGenerated": False, "columns": COLUMNS, "cardHeight": CARD_HEIGHT,
        }],
        "isAccordionReordered": True,  # keeps the view's section first
        "globalLineChartConfig": {"xAxisKey": "metric", "selectedXAxisMetricKey": X_AXIS_METRIC, "lineSmoothness": 0},
        # a regular expression (not se/test/acc too): the view's charts only; clearing it shows the rest
        "chartsSearchFilter": "^(" + "|".join(CHART_METRICS) + ")$",
    }


def share_key(parent_id: str) -> str:
    return f"lth-sweep-{parent_id}"


def publish_comparison_view(client, experiment_id: str, parent_id: str, group_key: str = record.LABEL) -> str:
    """Writes the sweep's view into its experiment (idempotent) and returns its share key."""
    key = share_key(parent_id)
    client.set_experiment_tag(experiment_id, SHARE_TAG_PREFIX + key, json.dumps(view_state(parent_id, group_key)))
    return key


def comparison_url(server: str, experiment_id: str, parent_id: str) -> str:
    """The chart view comparing the sweep's methods (the view `publish_comparison_view` wrote)."""
    query = urlencode({"viewStateShareKey": share_key(parent_id), "compareRunsMode": "CHART", "workflowType": "machine_learning"})
    return f"{server}/#/experiments/{experiment_id}/runs?{query}"

