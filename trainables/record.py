"""What lth-sweep's MLflow record holds, named once (as open_lth's `paths.py` names every file a
run writes): the tags on its runs, the metrics that mark a step as complete, the artifact paths,
and the one batched writer every process logs through.

The record: one parent run per sweep (`KIND` = "sweep"), one child per dense trunk ("trunk") and
per lineage ("lineage"), each found again by its `ID` (the stable hash of its spec) and the sweep's
name, so reruns never duplicate a run. Metrics are slash-grouped, step = round (0 for a trunk).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names of this module are read by commands that never import MLflow (`lth query`)
    from mlflow.tracking import MlflowClient

# --- tags ---------------------------------------------------------------------------------------
KIND = "lth.kind"  #: "sweep" | "trunk" | "lineage"
SWEEP = "lth.sweep"  #: the sweep's name (its config's `name`)
ID = "lth.id"  #: the stable hash of what determines the run (sweep id, trunk id, lineage id)
METHOD = "lth.method"  #: a lineage's pruning method
LABEL = "lth.label"  #: a lineage's label (the method, or the config's name for the entry)
TRUNK = "lth.trunk"  #: the trunk id a lineage starts from
ANALYSIS = "lth.analysis"  #: the analysis spec's id, on lineages analysed by the pool
ERROR = "lth.error"  #: why a run FAILED
NOTES = "lth.notes"  #: what a run should say (a layer saved from collapse, a restart), one per line
STOPPED = "lth.stopped"  #: why the scheduler stopped a lineage (its run ends KILLED, not FAILED)
WORKER = "lth.worker"  #: host:pid of the attempt that ran a lineage
NODE = "lth.node"  #: the Ray node id of that attempt (hosts can hold several nodes)
DEVICE = "lth.device"  #: the device a trunk or lineage trained on
PARENT = "mlflow.parentRunId"  #: MLflow's own: the sweep's run, on every child
DESCRIPTION = "mlflow.note.content"  #: MLflow's own: the run's description in the UI
RUN_COLOR = "mlflow.runColor"  #: MLflow's own: a run's colour in charts (one per method, as in the figures)
SEED = "lth.seed"  #: a trunk's or lineage's training seed (also `trunk.seed` in params), to filter by
# What made a run, set when it is created (trainables.provenance):
USER = "mlflow.user"  #: MLflow's own: who started the driver
SOURCE_NAME = "mlflow.source.name"  #: MLflow's own: the program that made the run (the `lth` script)
SOURCE_TYPE = "mlflow.source.type"  #: MLflow's own: LOCAL
GIT_COMMIT = "mlflow.source.git.commit"  #: MLflow's own: lth-sweep's commit, where it runs from a git checkout
SOURCE_DIRTY = "lth.source.dirty"  #: "true" when that checkout's tracked files differed from the commit
VERSION_LTH_SWEEP = "lth.version.lth_sweep"  #: lth-sweep's version; another one's finished run is "stale"
VERSION_TORCH = "lth.version.torch"
VERSION_RAY = "lth.version.ray"
VERSION_MLFLOW = "lth.version.mlflow"
VERSION_PYTHON = "lth.version.python"

SPEC = "lth.spec"  #: param of every trunk and lineage run: its spec's canonical JSON, which its id hashes
TAG_CHARS = 5000  #: longest tag value kept (MLflow's limit is 8000; errors and notes are cut here)
PARAM_CHARS = 6000  #: longest param value kept (MLflow's limit)

SWEEP_KIND, TRUNK_KIND, LINEAGE_KIND = "sweep", "trunk", "lineage"

# --- markers: logged last in their batch, so their steps are the complete ones ------------------
ROUND_DONE = "sparsity"  #: on a lineage: the rounds whose metrics are all logged
ANALYSIS_DONE = "analysis/seconds"  #: on a lineage (and at step 0 on a trunk): the analysed rounds
QUEUED_SECONDS = "time/queued_seconds"  #: at step 0 on a lineage: from its run's creation to its trial's start

#: the dense twin's metrics on its trunk's run (trainables/twin.py): `twin/<consistency metric>`, `twin/test/acc`
TWIN_PREFIX = "twin/"

# --- artifact paths -----------------------------------------------------------------------------
TRUNK_FOLDER = "trunk"  #: a trunk's tensors (init, final, rewind_<k>) and their manifest
TRUNK_MANIFEST = "manifest.json"  #: in TRUNK_FOLDER: the sha256 of each tensor file
TICKET_WEIGHTS = "ticket/weights.safetensors"  #: the last round's reported network
TICKET_MASKS = "ticket/masks.safetensors"  #: the masks it trained under
PLOTS_FOLDER = "plots"  #: the sweep's figures, on the parent run
SUMMARY_TABLE = "summary/lineages.json"  #: on the parent: the summary, one row per lineage (a table MLflow's UI renders)
SUMMARY_CSV = "summary/lineages.csv"  #: the same table as CSV
VERDICTS_TABLE = "verdicts/tickets.json"  #: on the parent: `lth tickets --format csv`'s rows, a table the UI renders
VERDICTS_CSV = "verdicts/tickets.csv"  #: the same as CSV
VERDICTS_MARKDOWN = "verdicts/tickets.md"  #: `lth tickets --format markdown`
VERDICTS_TEXT = "verdicts/tickets.txt"  #: `lth tickets` as the terminal shows it
GRADCAM_IMAGES = "gradcam"  #: MLflow image key of the Grad-CAM grids, step = round, 0 the trunk's: the run page's image slider


def gradcam_grid(label: str) -> str:
    """Where an analysis draws its Grad-CAM grid (`label`: dense, round_<NN>)."""
    return f"xai/gradcam_{label}.png"


def round_masks(round_index: int) -> str:
    """Where a lineage's masks of one round are stored."""
    return f"masks/round_{round_index:02d}.safetensors"


def round_ticket(round_index: int) -> str:
    """Where a lineage keeps one round's evaluated network and the masks it trained under, packed
    (trainables/ticket_packing.py). Runs made before these were kept have only the last round's,
    as TICKET_WEIGHTS and TICKET_MASKS."""
    return f"tickets/round_{round_index:02d}.safetensors"


DIGEST_PREFIX = "lth.sha256."  #: + an artifact's path: its sha256 when logged, on the run that holds it


def digest_tag(artifact_path: str) -> str:
    """The tag that keeps an artifact's sha256 in the tracking store, apart from the artifact
    store the file lives in, so a file rotted, cut short or swapped there is found when read."""
    return f"{DIGEST_PREFIX}{artifact_path}"


def trunk_file(name: str) -> str:
    """A trunk's tensor file (`name`: init, final, rewind_<k>)."""
    return f"{TRUNK_FOLDER}/{name}.safetensors"


# --- the writer ---------------------------------------------------------------------------------
METRICS_PER_BATCH, PARAMS_PER_BATCH = 1000, 100  # MLflow's per-request limits


def log_metrics(client: MlflowClient, run_id: str, step: int, metrics: dict[str, float], marker: str | None = None) -> None:
    """`metrics` at `step` in as few `log_batch` calls as MLflow allows, `marker` (when given and
    present) last, so a reader that sees the marker at a step sees every metric of it."""
    now = int(time.time() * 1000)
    ordered = sorted(metrics.items(), key=lambda item: item[0] == marker)
    from mlflow.entities import Metric

    batch = [Metric(key, float(value), now, step) for key, value in ordered]
    for start in range(0, len(batch), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=batch[start : start + METRICS_PER_BATCH])


def log_params(client: MlflowClient, run_id: str, params: dict[str, str], have: set[str] = frozenset()) -> list[str]:
    """Logs the params not in `have` (MLflow refuses to change one); returns the keys logged."""
    from mlflow.entities import Param

    items = [Param(key, value[:PARAM_CHARS]) for key, value in params.items() if key not in have]
    for start in range(0, len(items), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + PARAMS_PER_BATCH])
    return [item.key for item in items]


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])


def search_all(client: MlflowClient, experiment_ids: list[str], query: str, page: int = 1000) -> list:
    """Every run `query` finds, page after page (MLflow returns at most `page` a request)."""
    runs, token = [], None
    while True:
        found = client.search_runs(experiment_ids, query, max_results=page, page_token=token)
        runs += list(found)
        token = found.token
        if not token:
            return runs


def steps_with(client: MlflowClient, run_id: str, marker: str) -> set[int]:
    """The steps at which `marker` was logged: the complete ones."""
    return {metric.step for metric in client.get_metric_history(run_id, marker)}


def batch_at(client: MlflowClient, run_id: str, step: int, marker: str) -> dict[str, float]:
    """The metrics of the batch that `marker` closed at `step` (`log_metrics` gives one batch one
    timestamp), as they were logged; {} when `marker` is not at `step`. One history read per key
    of the run: for replays, not for every round. (Two batches logged in the same millisecond
    would read as one: a round's analysis is logged long after the round's training.)"""
    stamps = {metric.timestamp for metric in client.get_metric_history(run_id, marker) if metric.step == step}
    if not stamps:
        return {}
    stamp = max(stamps)
    found = {}
    for key in client.get_run(run_id).data.metrics:
        for metric in client.get_metric_history(run_id, key):
            if metric.step == step and metric.timestamp == stamp:
                found[key] = metric.value
    return found
