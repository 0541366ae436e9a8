"""A ticket in MLflow's model registry (`lth export ... --register NAME`): the ONNX export logged
as an MLflow model (MLflow 3's LoggedModel, `onnx` flavor) in its sweep's experiment, its lineage's
run as source, named after the ticket (`<label>-s<seed>-r<round>`) and holding the round's
metrics; then registered as a new version of NAME, tagged and described (label, method, seed,
round, sparsity, test accuracy and its sampling error, sweep, lineage run). The model takes pixels
in [0, 1] and normalises them itself (`pixel_input.py`): `pyfunc` users need no preprocessing code.

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

LOGGED_MODEL_BAD_CHARACTERS = "/:.%\"'"  #: what MLflow 3 refuses in a logged model's name
MODEL_TYPE = "lth-ticket"  #: the logged model's `model_type`, to filter an experiment's Models tab by


@dataclass(frozen=True)
class RegisteredTicket:
    name: str
    version: str
    model_uri: str  #: "models:/NAME/VERSION", what `mlflow.pyfunc.load_model` takes
    run_id: str  #: the lineage's run: the model version's source
    model_id: str = ""  #: the logged model (MLflow 3's LoggedModel), in the sweep's experiment


def register_ticket(request: ExportRequest, name: str) -> RegisteredTicket:
    """Logs the ticket `request` names as an ONNX model in its sweep's experiment, its lineage's
    run as source (the run's page lists it under "Logged models", the experiment's Models tab
    shows it), named after the ticket (`<label>-s<seed>-r<round>`), with the round's metrics
    (those the run logged at the round's step) and the ticket's tags; then registers it as a new
    version of the registered model `name` (created if new), with the same tags and a description
    saying which ticket it is. Prints nothing."""
    import mlflow
    import mlflow.onnx
    from mlflow.tracking import MlflowClient

    model, metadata = export_onnx_model(request, pixels=True)
    ticket = metadata["ticket"]
    run_id = ticket["mlflow_run_id"]
    shape = metadata["input"]["shape"]
    client = MlflowClient(request.tracking_uri)
    with _tracking(request.tracking_uri), _quiet_mlflow():
        run = client.get_run(run_id)
        se = _round_metric(client, run_id, "se/test/acc", ticket["round"])
        tags = ticket_tags(metadata, se)
        # The logged model made here, not by log_model: log_model puts a model it creates in the
        # fluent API's experiment (Default, with no active run), not its source run's.
        logged = client.create_logged_model(
            experiment_id=run.info.experiment_id, name=logged_model_name(ticket), source_run_id=run_id,
            tags=tags, params={key: str(value) for key, value in run.data.params.items()}, model_type=MODEL_TYPE,
        )
        # run_id + step: the run's outputs list the model at the round, and the metrics the run
        # logged at the round's step are copied onto the model (MLflow's log_model does both).
        mlflow.onnx.log_model(
            model, model_id=logged.model_id, run_id=run_id, step=ticket["round"],
            signature=_signature(shape, metadata["classes"]["count"]), metadata=metadata,
        )
        # MLflow's own registration: creates `name` if new, and links the version on the logged
        # model (its `mlflow.modelVersions` tag, which the UI reads) as a bare client would not.
        version = mlflow.register_model(f"models:/{logged.model_id}", name, await_registration_for=60, tags=tags)
        version = client.update_model_version(name, version.version, description=description(metadata, se, run.info.experiment_id))
    log.info("registered %s version %s (logged model %s) from run %s", name, version.version, logged.model_id, run_id)
    return RegisteredTicket(name, str(version.version), f"models:/{name}/{version.version}", run_id, logged.model_id)


def logged_model_name(ticket: dict) -> str:
    """`<label>-s<seed>-r<round>`, the characters MLflow refuses in a logged model's name as `_`."""
    label = "".join("_" if c in LOGGED_MODEL_BAD_CHARACTERS else c for c in ticket["label"])
    return f"{label}-s{ticket['seed']}-r{ticket['round']}"


def ticket_tags(metadata: dict, se: float | None = None) -> dict[str, str]:
    """What the ticket is, as tags of both the logged model and the model version."""
    ticket = metadata["ticket"]
    sparsity = metadata["sparsity"]["effective"]
    tags = {
        "lth.sweep": ticket["sweep"], "lth.sweep_id": ticket["sweep_id"], "lth.id": ticket["lineage_id"],
        "lth.label": ticket["label"], "lth.method": ticket["method"], "lth.seed": str(ticket["seed"]),
        "lth.round": str(ticket["round"]), "lth.winning": str(ticket["winning"]).lower(),
        "lth.sparsity": f"{sparsity:.4f}" if sparsity is not None else "",
    }
    accuracy = metadata["metrics"].get("test/acc")
    if accuracy is not None:
        tags["lth.test/acc"] = f"{accuracy:.4f}"
    if se is not None:
        tags["lth.se/test/acc"] = f"{se:.4f}"
    return {key: value for key, value in tags.items() if value != ""}


def description(metadata: dict, se: float | None, experiment_id: str) -> str:
    """The model version's description: which ticket, how sparse, how accurate, where from."""
    ticket = metadata["ticket"]
    sparsity = metadata["sparsity"]["effective"]
    accuracy = metadata["metrics"].get("test/acc")
    which = "winning ticket, round" if ticket["winning"] else "round"
    lines = [
        f"lth-sweep ticket: lineage {ticket['label']} (method {ticket['method']}), seed {ticket['seed']}, {which} {ticket['round']}.",
        f"Sparsity: {sparsity:.2%} of the pruned layers' weights removed." if sparsity is not None else "Sparsity: not logged.",
    ]
    if accuracy is not None:
        lines.append(f"Test accuracy: {accuracy:.4f}" + (f" ± {se:.4f} (se/test/acc, sampling error)." if se is not None else "."))
    else:
        lines.append("Test accuracy: not logged for this round.")
    lines += [
        f"Sweep: {ticket['sweep']} (id {ticket['sweep_id']}, parent run {ticket['mlflow_parent_run_id']}, experiment {experiment_id}).",
        f"Lineage run: {ticket['mlflow_run_id']} (lth.id {ticket['lineage_id']}).",
        "ONNX (mlflow.onnx / mlflow.pyfunc with onnxruntime; nothing unpickled). Input: float32 images "
        f"(N, {', '.join(map(str, metadata['input']['shape']))}), pixels in [0, 1] (the model normalises them; resize and "
        "convert channels as the model's metadata, `lth.ticket`, says); output: logits.",
    ]
    return "\n".join(lines)


def _round_metric(client, run_id: str, key: str, round_index: int) -> float | None:
    """The value `key` was logged with at the round's step, or None."""
    values = [metric.value for metric in client.get_metric_history(run_id, key) if metric.step == round_index]
    return values[-1] if values else None


def _signature(shape: list[int], classes: int):
    """Images in (batch, channels, height, width), pixels in [0, 1]; logits out."""
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
