"""Logging one lineage's rounds to its MLflow run, created beforehand by the driver.

Each round is one `log_batch` at step = round. Rounds already present in the run (a restarted
trial replays rounds after its last checkpoint) are not logged again.

Against an MLflow server, every request is retried with exponential backoff when the server does
not answer (MLflow's client: `MLFLOW_HTTP_REQUEST_MAX_RETRIES` 7, `..._BACKOFF_FACTOR` 2, about
4 minutes in all), so a trial rides out a restart of the server. A retried `log_batch` whose first
attempt did land is harmless: the SQL stores drop metrics identical to ones they hold.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import save_file

from trainables import record
from trainables.checkpoint import sha256


class RunLogger:
    def __init__(self, tracking_uri: str, run_id: str):
        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id
        self.logged_rounds = record.steps_with(self.client, run_id, record.ROUND_DONE)

    def log_round(self, round_index: int, metrics: dict[str, float], masks: dict[str, torch.Tensor]) -> None:
        if round_index in self.logged_rounds:
            return
        self.log_tensors(record.round_masks(round_index), masks)
        self.log_metrics(round_index, metrics)

    def log_metrics(self, round_index: int, metrics: dict[str, float]) -> None:
        """The round's metrics in one `log_batch` (per 1000), the round marker last."""
        record.log_metrics(self.client, self.run_id, round_index, metrics, marker=record.ROUND_DONE)
        self.logged_rounds.add(round_index)

    def note(self, round_index: int | None, notes: list[str]) -> None:
        """Things the run should say (e.g. a layer saved from collapse), as the notes tag."""
        previous = self.client.get_run(self.run_id).data.tags.get(record.NOTES, "")
        lines = [line for line in previous.splitlines() if line]
        prefix = "" if round_index is None else f"round {round_index}: "
        lines += [f"{prefix}{note}" for note in notes if f"{prefix}{note}" not in lines]
        self.client.set_tag(self.run_id, record.NOTES, "\n".join(lines)[: record.TAG_CHARS])

    def log_tensors(self, artifact_path: str, tensors: dict[str, torch.Tensor]) -> str:
        """Uploads one safetensors file; returns its sha256, for a manifest."""
        path = Path(artifact_path)
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / path.name
            save_file({k: v.contiguous() for k, v in tensors.items()}, file)
            self.client.log_artifact(self.run_id, str(file), str(path.parent))
            return sha256(file)

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        if error:
            record.set_tags(self.client, self.run_id, {record.ERROR: error[: record.TAG_CHARS]})
        self.client.set_terminated(self.run_id, status)
