"""Logging one lineage's rounds to its MLflow run, created beforehand by the driver.

Each round is one `log_batch` at step = round. Rounds already present in the run (a restarted
trial replays rounds after its last checkpoint) are not logged again.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient
from safetensors.torch import save_file

ROUND_MARKER = "sparsity"  # logged last in every round's batch: its steps are the finished rounds


class RunLogger:
    def __init__(self, tracking_uri: str, run_id: str):
        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id
        self.logged_rounds = {m.step for m in self.client.get_metric_history(run_id, ROUND_MARKER)}

    def log_round(self, round_index: int, metrics: dict[str, float], masks: dict[str, torch.Tensor]) -> None:
        if round_index in self.logged_rounds:
            return
        self.log_tensors(f"masks/round_{round_index:02d}.safetensors", masks)
        now = int(time.time() * 1000)
        ordered = sorted(metrics.items(), key=lambda item: item[0] == ROUND_MARKER)
        batch = [Metric(key, float(value), now, round_index) for key, value in ordered]
        for start in range(0, len(batch), 1000):  # MLflow's per-request limit
            self.client.log_batch(self.run_id, metrics=batch[start : start + 1000])
        self.logged_rounds.add(round_index)

    def note(self, round_index: int, notes: list[str]) -> None:
        """Things the run should say (e.g. a layer saved from collapse), as the `lth.notes` tag."""
        previous = self.client.get_run(self.run_id).data.tags.get("lth.notes", "")
        lines = [line for line in previous.splitlines() if line]
        lines += [f"round {round_index}: {note}" for note in notes if f"round {round_index}: {note}" not in lines]
        self.client.set_tag(self.run_id, "lth.notes", "\n".join(lines)[:5000])

    def log_tensors(self, artifact_path: str, tensors: dict[str, torch.Tensor]) -> None:
        path = Path(artifact_path)
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / path.name
            save_file({k: v.contiguous() for k, v in tensors.items()}, file)
            self.client.log_artifact(self.run_id, str(file), str(path.parent))

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        if error:
            self.client.log_batch(self.run_id, tags=[RunTag("lth.error", error[:5000])])
        self.client.set_terminated(self.run_id, status)
