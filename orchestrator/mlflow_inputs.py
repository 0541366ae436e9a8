"""What a run's page in MLflow's UI shows besides metrics and files: the data a trunk or lineage
trained and was tested on, as MLflow dataset inputs (the runs table's "Datasets" column and the
run's dataset drawer), and tables MLflow's artifact viewer renders (the sweep's summary).

A dataset input is described from the data spec alone (`trainables.data.describe`): nothing is
loaded on the driver. Its digest is the data spec's id, so the same data is one MLflow dataset
across every run of an experiment, and logging it again (a rerun, a resumed sweep) adds nothing:
MLflow keeps one input per (name, digest) and run.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_LOGGED_ARTIFACTS

from lth_sweep.trainables.data.describe import describe
from lth_sweep.trainables.specs import DataSpec, LineageSpec, TrunkSpec


TRAINING, EVALUATION = "training", "evaluation"  #: MLflow's context tag of the train and test splits
TEST_SUFFIX = " (test)"  #: the test split's dataset name: MLflow keeps one input per name and digest


def data_of(spec: TrunkSpec | LineageSpec) -> DataSpec:
    return spec.trunk.data if isinstance(spec, LineageSpec) else spec.data


def source_of(data: DataSpec) -> tuple[str, str]:
    """(MLflow source type, source JSON): a dataset read from disk is its local path; a built-in
    one (shapes, digits) is made by code, nothing is read."""
    if data.path:
        return "local", json.dumps({"uri": str(Path(data.path).resolve())})
    return "code", json.dumps({"tags": {"generated": f"trainables.data ({data.name})"}})


def schema_of(data: DataSpec) -> str:
    """Images and labels as MLflow tensor specs: float32 (-1, C, H, W), int64 (-1,)."""
    import numpy as np
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.types import Schema, TensorSpec

    shape = describe(data).shape
    schema = TensorDatasetSchema(
        features=Schema([TensorSpec(np.dtype("float32"), (-1, *shape), "images")]),
        targets=Schema([TensorSpec(np.dtype("int64"), (-1,), "labels")]),
    )
    return json.dumps(schema.to_dict())


def profile_of(data: DataSpec, split: str) -> str:
    described = describe(data)
    profile = {
        "images": described.train if split == "train" else described.test,
        "image_shape": list(described.shape),
        "classes": described.classes,
        "data_seed": data.seed,
    }
    if data.validation_size:
        profile["validation_images"] = data.validation_size
    if described.assumed:
        profile["assumed"] = list(described.assumed)
    return json.dumps(profile)


def dataset_inputs(data: DataSpec) -> list[DatasetInput]:
    """The train split (context `training`, named as the data spec) and the test split (context
    `evaluation`, named `<name> (test)`), both with the data spec's id as digest."""
    source_type, source = source_of(data)
    schema = schema_of(data)
    return [
        DatasetInput(
            Dataset(name, data.id, source_type, source, schema=schema, profile=profile_of(data, split)),
            tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)],
        )
        for name, split, context in ((data.name, "train", TRAINING), (data.name + TEST_SUFFIX, "test", EVALUATION))
    ]


def log_dataset_inputs(client: MlflowClient, run, spec: TrunkSpec | LineageSpec) -> int:
    """Logs the spec's datasets as inputs of `run` (an MLflow Run, as search_runs returns it)
    unless it has them already; returns how many were logged."""
    have = {(entry.dataset.name, entry.dataset.digest) for entry in run.inputs.dataset_inputs} if run.inputs else set()
    missing = [entry for entry in dataset_inputs(data_of(spec)) if (entry.dataset.name, entry.dataset.digest) not in have]
    if missing:
        client.log_inputs(run.info.run_id, datasets=missing)
    return len(missing)


def log_table(client: MlflowClient, run_id: str, frame, artifact_file: str, csv_file: str | None = None) -> None:
    """`frame` (a pandas DataFrame) as a table MLflow's artifact viewer renders: JSON in pandas'
    split orientation with the run's `mlflow.loggedArtifacts` tag naming it, as
    `MlflowClient.log_table` writes it, but replacing the file where log_table would append to it
    (a finished sweep summarised again must not list its lineages twice). NaN is written as null
    (as an empty cell in the CSV, `csv_file`, when given)."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, write in ((artifact_file, _write_json), (csv_file, _write_csv)):
            if name:
                local = Path(tmp) / Path(name).name
                write(frame, local)
                folder = str(Path(name).parent)
                client.log_artifact(run_id, str(local), None if folder == "." else folder)
    logged = json.loads(client.get_run(run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
    entry = {"path": artifact_file, "type": "table"}
    if entry not in logged:
        client.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps([*logged, entry]))


def _write_json(frame, path: Path) -> None:
    frame.to_json(path, orient="split", index=False, date_format="iso")


def _write_csv(frame, path: Path) -> None:
    frame.to_csv(path, index=False)
