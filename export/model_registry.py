"""A ticket in MLflow's model registry (`lth export ... --register NAME`): the ONNX export logged
as an MLflow model under its lineage's run (the model version's source run), with MLflow's `onnx`
flavor, and registered as a new version of NAME.

Why ONNX: MLflow loads it (`mlflow.onnx.load_model`, or `mlflow.pyfunc.load_model` with
onnxruntime) without unpickling anything from storage. MLflow's `pytorch` flavor would pickle the
whole module (torch.save), which loading unpickles. What MLflow still writes beside the model: its
MLmodel YAML, the environment files (conda.yaml, requirements.txt, python_env.yaml) and the
signature, all text.
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass

from lth_sweep.export.export import ExportRequest, export_onnx_model

log = logging.getLogger(__name__)

ARTIFACT_NAME = "ticket"  #: the logged model's name under its run (MLflow 3's LoggedModel name)


@dataclass(frozen=True)
class RegisteredTicket:
    name: str
    version: str
    model_uri: str  #: "models:/NAME/VERSION", what `mlflow.pyfunc.load_model` takes
    run_id: str  #: the lineage's run: the model version's source


def register_ticket(request: ExportRequest, name: str) -> RegisteredTicket:
    """Logs the ticket `request` names as an ONNX model under its lineage's run and registers it
    as a new version of the registered model `name` (created if new). The version carries the
    ticket's metadata as tags (label, round, seed, sparsity, sweep)."""
    import mlflow
    import mlflow.onnx
    from mlflow.tracking import MlflowClient

    model, metadata = export_onnx_model(request)
    ticket = metadata["ticket"]
    shape = metadata["input"]["shape"]
    with _tracking(request.tracking_uri), _quiet_mlflow():
        info = mlflow.onnx.log_model(
            model, name=ARTIFACT_NAME, run_id=ticket["mlflow_run_id"], registered_model_name=name,
            signature=_signature(shape, metadata["classes"]["count"]), metadata=metadata,
            await_registration_for=60,
        )
    version = info.registered_model_version
    tags = {
        "lth.label": ticket["label"], "lth.method": ticket["method"], "lth.round": str(ticket["round"]),
        "lth.winning": str(ticket["winning"]).lower(), "lth.seed": str(ticket["seed"]), "lth.sweep": ticket["sweep"],
        "lth.sweep_id": ticket["sweep_id"], "lth.sparsity": f"{metadata['sparsity']['effective']:.4f}",
    }
    client = MlflowClient(request.tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    log.info("registered %s version %s from run %s", name, version, ticket["mlflow_run_id"])
    return RegisteredTicket(name, str(version), f"models:/{name}/{version}", ticket["mlflow_run_id"])


def _signature(shape: list[int], classes: int):
    """Images in (batch, channels, height, width), normalised as the metadata says; logits out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *shape), "images")])
    return ModelSignature(inputs=inputs, outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes), "logits")]))


@contextlib.contextmanager
def _tracking(uri: str):
    """MLflow's fluent API (log_model) reads the global tracking URI: set for the call, then put back."""
    import mlflow

    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@contextlib.contextmanager
def _quiet_mlflow():
    """MLflow announces each registration on stderr (with print, and through its logger's own
    handler): passed to logging instead, where lth-sweep's notes go; the caller says what was
    registered (`lth export` prints one line, the Python API returns it)."""
    logger = logging.getLogger("mlflow")
    level, said = logger.level, io.StringIO()
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stderr(said):
            yield
    finally:
        logger.setLevel(level)
        for line in filter(str.strip, said.getvalue().splitlines()):
            log.info("mlflow: %s", line)
