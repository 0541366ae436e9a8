"""A round's evaluated network and its masks, downloaded from the lineage's run.

Every round keeps its ticket packed at `record.round_ticket(k)`. A lineage logged before that was
so kept only its last round's, as `record.TICKET_WEIGHTS` and `record.TICKET_MASKS`: that round
still exports, an earlier one is said not to have been kept.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from trainables import record
from trainables.export.errors import ExportError
from trainables.export.lineage_run import LineageRun
from trainables.export.packing import load_ticket

Tensors = dict[str, torch.Tensor]


def _artifacts(client: MlflowClient, run_id: str, folder: str) -> set[str]:
    return {item.path for item in client.list_artifacts(run_id, folder)}


def round_tensors(client: MlflowClient, lineage: LineageRun, round_index: int) -> tuple[Tensors, Tensors]:
    """(weights, masks) of round `round_index`: the network the round's metrics describe."""
    packed = record.round_ticket(round_index)
    with tempfile.TemporaryDirectory() as tmp:
        if packed in _artifacts(client, lineage.run_id, str(Path(packed).parent)):
            return load_ticket(client.download_artifacts(lineage.run_id, packed, tmp))
        last = lineage.planned_rounds
        legacy = _artifacts(client, lineage.run_id, str(Path(record.TICKET_WEIGHTS).parent))
        if round_index == last and {record.TICKET_WEIGHTS, record.TICKET_MASKS} <= legacy:
            weights = load_file(client.download_artifacts(lineage.run_id, record.TICKET_WEIGHTS, tmp))
            masks = load_file(client.download_artifacts(lineage.run_id, record.TICKET_MASKS, tmp))
            return weights, masks
    if {record.TICKET_WEIGHTS, record.TICKET_MASKS} <= legacy:
        raise ExportError(
            f"round {round_index} of lineage {lineage.label} seed {lineage.seed} (run {lineage.run_id}) was not kept: the "
            f"lineage was logged before every round's ticket was, and only its last round ({last}) is stored; export "
            f"--round {last}, or run the lineage again under a new sweep name to keep every round"
        )
    raise ExportError(
        f"lineage {lineage.label} seed {lineage.seed} (run {lineage.run_id}) holds no ticket of round {round_index} "
        f"(no {packed}{'' if round_index != last else ' nor ' + record.TICKET_WEIGHTS}); was it logged by lth-sweep?"
    )
