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
import time
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import save_file

from lth_sweep.trainables import record
from lth_sweep.trainables.checkpoint import sha256
from lth_sweep.trainables.ticket_packing import pack_ticket


#: the trunk's metrics a lineage logs at step 0 (its charts' starting point)
DENSE_AT_STEP_0 = ("test/acc", "test/loss")


class RunLogger:
    def __init__(self, tracking_uri: str, run_id: str):
        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id
        self.logged_rounds = record.steps_with(self.client, run_id, record.ROUND_DONE)

    def log_round(
        self, round_index: int, metrics: dict[str, float], masks: dict[str, torch.Tensor],
        evaluated: dict[str, torch.Tensor] | None = None, evaluated_masks: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """The round's masks, its evaluated network packed with the masks it trained under
        (`evaluated_masks`, default `masks`; `record.round_ticket`), then its metrics, the round
        marker last: a round MLflow marks done has its ticket."""
        if round_index in self.logged_rounds:
            return
        digests = {record.round_masks(round_index): self._upload(record.round_masks(round_index), masks)}
        if evaluated is not None:
            tensors, metadata = pack_ticket(evaluated, masks if evaluated_masks is None else evaluated_masks)
            digests[record.round_ticket(round_index)] = self._upload(record.round_ticket(round_index), tensors, metadata)
        record.set_tags(self.client, self.run_id, {record.digest_tag(path): digest for path, digest in digests.items()})
        self.log_metrics(round_index, metrics)

    def log_start(self, trunk_metrics: dict[str, float]) -> None:
        """At a trial's first start, step 0: the trunk's test accuracy and loss, so the lineage's
        own charts in MLflow start from the dense network, and `time/queued_seconds`, how long the
        run waited for its trial (the driver creates every run when the sweep starts, so MLflow's
        Duration of a run counts that wait). No round marker: readers see rounds from 1."""
        if self.client.get_metric_history(self.run_id, record.QUEUED_SECONDS):
            return  # a restarted attempt
        started = self.client.get_run(self.run_id).info.start_time or 0
        step_0 = {key: trunk_metrics[key] for key in DENSE_AT_STEP_0 if key in trunk_metrics}
        step_0[record.QUEUED_SECONDS] = max(0.0, time.time() - started / 1000)
        record.log_metrics(self.client, self.run_id, 0, step_0)

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

    def log_tensors(self, artifact_path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
        """Uploads one safetensors file and records its sha256 on the run (`record.digest_tag`),
        which reading it back checks (`record.download_checked`); returns the sha256."""
        digest = self._upload(artifact_path, tensors, metadata)
        self.client.set_tag(self.run_id, record.digest_tag(artifact_path), digest)
        return digest

    def _upload(self, artifact_path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
        path = Path(artifact_path)
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / path.name
            save_file({k: v.contiguous() for k, v in tensors.items()}, file, metadata=metadata)
            self.client.log_artifact(self.run_id, str(file), str(path.parent))
            return sha256(file)

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        if error:
            record.set_tags(self.client, self.run_id, {record.ERROR: error[: record.TAG_CHARS]})
        self.client.set_terminated(self.run_id, status)
