"""A round's evaluated network and its masks, downloaded from the lineage's run and checked
against the sha256 recorded when they were logged (`trainables/stored_artifacts.py`).

Every round keeps its ticket packed at `record.round_ticket(k)`. A lineage logged before that was
so kept only its last round's, as `record.TICKET_WEIGHTS` and `record.TICKET_MASKS`: that round
still exports, an earlier one is said not to have been kept.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from lth_sweep.trainables import record
from lth_sweep.export.errors import ExportError
from lth_sweep.export.lineage_run import LineageRun
from lth_sweep.trainables.ticket_packing import load_ticket
from lth_sweep.trainables.stored_artifacts import ArtifactUnusable, download_checked, stored_location, was_logged

Tensors = dict[str, torch.Tensor]
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextlib.contextmanager
def without_progress_bars():
    """MLflow draws a progress bar on stderr for each download (read from the environment at each
    call): off for the call, so that an export prints nothing but what its caller asks."""
    previous = os.environ.get(PROGRESS_BAR)
    os.environ[PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = previous


def _artifacts(client: MlflowClient, run_id: str, folder: str) -> set[str]:
    return {item.path for item in client.list_artifacts(run_id, folder)}


def round_tensors(client: MlflowClient, lineage: LineageRun, round_index: int) -> tuple[Tensors, Tensors]:
    """(weights, masks) of round `round_index`: the network the round's metrics describe."""
    run = client.get_run(lineage.run_id)
    which = f"lineage {lineage.label} seed {lineage.seed} (run {lineage.run_id})"
    packed = record.round_ticket(round_index)
    last = lineage.planned_rounds
    try:
        with without_progress_bars(), tempfile.TemporaryDirectory() as tmp:
            if packed in _artifacts(client, lineage.run_id, str(Path(packed).parent)):
                return load_ticket(download_checked(client, run, packed, tmp))
            if was_logged(run, packed) or _keeps_every_round(client, lineage.run_id):
                raise ArtifactUnusable(f"stored file {stored_location(run, packed)} is missing (the round was logged with it)")
            legacy = _artifacts(client, lineage.run_id, str(Path(record.TICKET_WEIGHTS).parent))
            if round_index == last and {record.TICKET_WEIGHTS, record.TICKET_MASKS} <= legacy:
                weights = load_file(download_checked(client, run, record.TICKET_WEIGHTS, tmp))
                masks = load_file(download_checked(client, run, record.TICKET_MASKS, tmp))
                return weights, masks
    except ArtifactUnusable as problem:
        raise ExportError(f"round {round_index} of {which}: {problem}; not exported") from None
    if {record.TICKET_WEIGHTS, record.TICKET_MASKS} <= legacy:
        raise ExportError(
            f"round {round_index} of {which} was not kept: the lineage was logged before every round's ticket was, and "
            f"only its last round ({last}) is stored; export --round {last}, or run the lineage again under a new sweep "
            "name to keep every round"
        )
    raise ExportError(f"{which} holds no ticket of round {round_index} (no {packed}); was it logged by lth-sweep?")


def _keeps_every_round(client: MlflowClient, run_id: str) -> bool:
    """A run with some round's packed ticket was logged by a version that keeps every round's."""
    return bool(_artifacts(client, run_id, str(Path(record.round_ticket(1)).parent)))
