"""What MLflow's UI shows besides metrics, written to a real MLflow store on SQLite (no Ray): the
dataset inputs of trunk and lineage runs, logged once however often a run is opened; the Grad-CAM
grid as one image per analysed step, never twice for a step; the sweep's summary as a table
artifact that MLflow's own reader loads, replaced (not appended to) when a sweep is summarised again."""
from __future__ import annotations

import json
import math

import pytest
from mlflow.tracking import MlflowClient

from lth_sweep.analysis.actors import Analyzer, image_steps, log_measurements
from lth_sweep.analysis.analysis_spec import AnalysisSpec
from lth_sweep.orchestrator.mlflow_inputs import EVALUATION, TEST_SUFFIX, TRAINING, dataset_inputs, log_table, source_of
from lth_sweep.orchestrator.mlflow_runs import SweepTracker
from lth_sweep.orchestrator.summary import TABLE_COLUMNS, summary_frame
from tests.support.tiny import tiny_lineage
from lth_sweep.trainables import record
from lth_sweep.trainables.specs import DataSpec, LineageSpec

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: tests/unit/conftest.py

GRADCAM_ONLY = {
    "gradcam": {"images": 32, "grid_images": 4}, "concepts": {"enabled": False}, "robustness": {"enabled": False},
    "mis": {"enabled": False}, "lime": {"enabled": False}, "flatness": {"enabled": False},
    "calibration": {"enabled": False},
}


def inputs_of(client: MlflowClient, run_id: str) -> dict[str, tuple]:
    """Dataset name -> (digest, source type, context tag, profile, schema) of the run's inputs."""
    found = {}
    for entry in client.get_run(run_id).inputs.dataset_inputs:
        tags = {tag.key: tag.value for tag in entry.tags}
        dataset = entry.dataset
        assert dataset.name not in found, f"{dataset.name} is an input of the run twice"
        found[dataset.name] = (dataset.digest, dataset.source_type, tags.get("mlflow.data.context"),
                               json.loads(dataset.profile), json.loads(dataset.schema))
    return found


def test_trunk_and_lineage_runs_have_their_data_as_inputs_once_across_reruns(mlflow_store):
    lineage = tiny_lineage()
    data = lineage.trunk.data
    for _ in range(2):  # the second tracker is a rerun of the sweep: the runs are found again
        tracker = SweepTracker(mlflow_store, "inputs", "sweep", "sweep-id")
        trunk_run = tracker.child(record.TRUNK_KIND, lineage.trunk, "trunk")
        lineage_run = tracker.child(record.LINEAGE_KIND, lineage, "imp s0")
        tracker.child(record.LINEAGE_KIND, lineage, "imp s0")  # opened twice by one driver
    client = tracker.client
    assert len(client.search_runs([tracker.experiment_id], max_results=10)) == 3  # parent, trunk, lineage
    for run in (trunk_run, lineage_run):
        inputs = inputs_of(client, run.info.run_id)
        assert set(inputs) == {"shapes", "shapes" + TEST_SUFFIX}
        train, test = inputs["shapes"], inputs["shapes" + TEST_SUFFIX]
        assert train[0] == test[0] == data.id  # the digest is the data spec's stable id
        assert (train[1], train[2], test[2]) == ("code", TRAINING, EVALUATION)
        assert train[3] == {"images": 256, "image_shape": [3, 16, 16], "classes": 9, "data_seed": 0}
        assert test[3]["images"] == 128
        features = json.loads(train[4]["mlflow_tensorspec"]["features"])
        assert features[0]["tensor-spec"] == {"dtype": "float32", "shape": [-1, 3, 16, 16]}


def test_other_data_is_another_dataset_and_a_folder_is_its_local_path(mlflow_store, tmp_path):
    tracker = SweepTracker(mlflow_store, "inputs", "sweep", "sweep-id")
    tiny = tiny_lineage()
    more_data = tiny.trunk.data.model_copy(update={"train_size": 512})
    bigger = LineageSpec(trunk=tiny.trunk.model_copy(update={"data": more_data}), pruning=tiny.pruning)
    run = tracker.child(record.LINEAGE_KIND, bigger, "imp s0")
    assert inputs_of(tracker.client, run.info.run_id)["shapes"][0] == more_data.id != tiny.trunk.data.id

    folder = DataSpec.model_validate({"name": "imagefolder", "path": str(tmp_path)}, context={"check_paths": False})
    assert source_of(folder) == ("local", json.dumps({"uri": str(tmp_path.resolve())}))
    (train, _) = dataset_inputs(folder)
    assert json.loads(train.dataset.profile)["assumed"] == ["split sizes", "classes"]


def test_the_gradcam_grid_is_one_image_per_step_never_logged_twice(mlflow_store, trained_trunk, tmp_path):
    client = MlflowClient(mlflow_store)
    experiment = client.create_experiment("images")
    trunk_run = client.create_run(experiment).info.run_id
    lineage_run = client.create_run(experiment).info.run_id
    analyzer = Analyzer(AnalysisSpec.model_validate(GRADCAM_ONLY))
    metrics, reference, folder = analyzer.reference(trained_trunk.spec, trained_trunk.final)
    log_measurements(client, trunk_run, 0, metrics, folder)
    assert reference.grid == (folder / record.gradcam_grid("dense")).read_bytes()
    lineage = tiny_lineage()
    for round_index in (1, 2):
        metrics, folder = analyzer.analyze(lineage, reference, round_index, trained_trunk.final, {})
        log_measurements(client, lineage_run, round_index, metrics, folder, dense_grid=reference.grid)
    # Round 2 replayed after its images were logged (a worker lost before its done marker landed).
    log_measurements(client, lineage_run, 2, metrics, folder, dense_grid=reference.grid)

    assert image_steps(client, trunk_run) == {0}
    assert image_steps(client, lineage_run) == {0, 1, 2}  # 0: the trunk's grid, where MLflow's slider opens
    files = sorted(entry.path for entry in client.list_artifacts(lineage_run, "images"))
    assert len(files) == 6, files  # per step the full PNG and MLflow's compressed WebP
    assert client.get_run(lineage_run).data.tags["mlflow.loggedImages"] == "True"
    step_0 = next(name for name in files if name.startswith("images/gradcam+step+0+") and name.endswith(".png"))
    assert pixels(client.download_artifacts(lineage_run, step_0, str(tmp_path))) == pixels(
        client.download_artifacts(trunk_run, record.gradcam_grid("dense"), str(tmp_path))
    )
    # The grids stay where the summary and README point: xai/gradcam_<label>.png
    grids = {entry.path for entry in client.list_artifacts(lineage_run, "xai") if entry.path.endswith(".png")}
    assert grids == {"xai/gradcam_round_01.png", "xai/gradcam_round_02.png"}
    assert {entry.path for entry in client.list_artifacts(trunk_run, "xai") if entry.path.endswith(".png")} == {"xai/gradcam_dense.png"}


def pixels(path: str) -> bytes:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def summary_row(name: str, last_acc: float, winning_round: int | None, rho: float) -> dict:
    """A row as orchestrator.summary.collect_rows makes it."""
    nan = float("nan")
    return {
        "lineage": f"id-{name}", "trunk": "trunk-id", "name": name, "method": name.split()[0], "seed": 0, "rounds": "2/2",
        "sparsity": 0.75, "dense_acc": 0.9784999999999999, "last_acc": last_acc, "delta_vs_dense": last_acc - 0.9784999999999999,
        "winning_round": winning_round, "winning_sparsity": nan if winning_round is None else 0.5,
        "winning": "undetermined" if winning_round is None else f"r{winning_round} 50.0%",
        "status": "FINISHED", "error": "", "stopped": "", "run_id": f"run-{name}", "curve": [(0.5, 0.9), (0.75, last_acc)],
        "gradcam_rho": rho, "dense_gradcam_rho": 1.0, "floor_gradcam_rho": nan, "on_object": nan, "dense_on_object": nan,
        "floor_on_object": nan, "concepts_j": 2 / 3, "dense_concepts_j": 1.0, "floor_concepts_j": nan,
        "true_concepts": nan, "dense_true_concepts": nan, "floor_true_concepts": nan,
    }


def test_the_summary_table_is_rounded_has_no_nan_and_is_replaced_not_appended(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)  # MlflowClient.load_table searches with the fluent API
    client = MlflowClient(mlflow_store)
    run_id = client.create_run(client.create_experiment("table")).info.run_id
    rows = [summary_row("imp s0", 0.9512345678, 2, 0.87654321), summary_row("random s0", 0.5, None, math.nan)]
    for _ in range(2):  # a finished sweep summarised again
        log_table(client, run_id, summary_frame(rows), record.SUMMARY_TABLE, record.SUMMARY_CSV)

    text = open(client.download_artifacts(run_id, record.SUMMARY_TABLE, str(tmp_path))).read()
    assert "NaN" not in text and "0.9784999" not in text
    table = json.loads(text)
    assert table["columns"] == list(TABLE_COLUMNS)
    assert len(table["data"]) == 2
    imp, random = (dict(zip(table["columns"], row)) for row in table["data"])
    assert (imp["dense_acc"], imp["last_acc"], imp["gradcam_rho"], imp["concepts_j"]) == (0.9785, 0.9512, 0.8765, 0.6667)
    assert (imp["winning_round"], imp["seed"], imp["rounds"]) == (2, 0, "2/2")
    assert random["winning_round"] is None and random["gradcam_rho"] is None and random["on_object"] is None
    # MLflow's own reader finds the table (what its UI renders from the run's loggedArtifacts tag).
    loaded = client.load_table(client.get_run(run_id).info.experiment_id, record.SUMMARY_TABLE, run_ids=[run_id])
    assert list(loaded["name"]) == ["imp s0", "random s0"]
    assert json.loads(client.get_run(run_id).data.tags["mlflow.loggedArtifacts"]) == [{"path": record.SUMMARY_TABLE, "type": "table"}]

    csv = open(client.download_artifacts(run_id, record.SUMMARY_CSV, str(tmp_path / "csv"))).read().splitlines()
    assert csv[0] == ",".join(TABLE_COLUMNS) and len(csv) == 3
    random_cells = dict(zip(TABLE_COLUMNS, csv[2].split(",")))
    assert random_cells["gradcam_rho"] == "" and random_cells["winning_round"] == "" and random_cells["dense_acc"] == "0.9785"
