"""Each lineage's checkpoint, kept by its trial in the storage path (trainables/checkpoint_folder.py):
one round at a time, complete or not found, and found again by a restarted trial or a new driver."""
from __future__ import annotations

import json
from pathlib import Path

from lth_sweep.trainables.checkpoint_folder import experiment_folder, latest_checkpoints, save_checkpoint


def written(folder: Path, round_index: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.safetensors").write_bytes(b"w" * 64)
    (folder / "state.json").write_text(json.dumps({"round": round_index}))
    return folder


def test_one_checkpoint_per_lineage_the_latest_round(tmp_path):
    experiment = experiment_folder(str(tmp_path / "runs"), "sweep-abc")
    for round_index in (1, 2, 3):
        save_checkpoint(experiment, "lineage1", round_index, written(tmp_path / f"local{round_index}", round_index))
    folder = tmp_path / "runs" / "sweep-abc" / "lineage1"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint_000003"]
    assert latest_checkpoints(experiment, ["lineage1", "other"]) == {"lineage1": (str(folder / "checkpoint_000003"), 3)}


def test_a_half_written_checkpoint_is_not_found_and_is_cleared_by_the_next(tmp_path):
    experiment = experiment_folder(str(tmp_path / "runs"), "sweep-abc")
    save_checkpoint(experiment, "lineage1", 1, written(tmp_path / "local1", 1))
    folder = tmp_path / "runs" / "sweep-abc" / "lineage1"
    (folder / "checkpoint_000002").mkdir()  # its writer died before state.json
    (folder / ".checkpoint_000002-dead").mkdir()  # staged by a writer that died
    assert latest_checkpoints(experiment, ["lineage1"])["lineage1"][1] == 1
    save_checkpoint(experiment, "lineage1", 2, written(tmp_path / "local2", 2))
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint_000002"]
    assert (folder / "checkpoint_000002" / "weights.safetensors").read_bytes() == b"w" * 64


def test_a_uri_keeps_its_options():
    assert experiment_folder("s3://bucket/runs?endpoint_override=localhost:9000", "sweep-abc") == (
        "s3://bucket/runs/sweep-abc?endpoint_override=localhost:9000")
