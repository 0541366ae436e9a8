"""Checkpoints and stored trunks are checked before use: a lineage checkpoint (safetensors and JSON
only, nothing to unpickle) or a trunk stored in MLflow that was truncated or altered on disk is
refused, naming the file. What a sweep does then (replay the lineage, retrain the trunk) is
tested on real sweeps in tests/sweep/test_faults.py."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

from tests.support.tiny import tiny_trunk
from lth_sweep.trainables.checkpoint import CheckpointCorrupt, load_state, save_state
from lth_sweep.trainables.lineage import LineageState
from lth_sweep.trainables.trunk import train_trunk


def test_a_truncated_or_altered_checkpoint_is_refused_naming_the_file(tmp_path):
    masks = {"w": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    state = LineageState(round=2, weights={"w": torch.randn(2, 2)}, masks=masks)
    save_state(tmp_path, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "masks.safetensors", "rng.safetensors", "state.json", "weights.safetensors"
    ]  # tensors as safetensors, the rest JSON: nothing to unpickle
    loaded, _ = load_state(tmp_path)
    assert loaded.round == 2 and torch.equal(loaded.masks["w"], masks["w"])

    weights = tmp_path / "weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit flipped: still a valid safetensors file
    with pytest.raises(CheckpointCorrupt, match=r"weights\.safetensors is truncated or altered"):
        load_state(tmp_path)
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointCorrupt, match=str(weights)):
        load_state(tmp_path)
    weights.write_bytes(data)
    (tmp_path / "masks.safetensors").unlink()
    with pytest.raises(CheckpointCorrupt, match=r"masks\.safetensors is missing"):
        load_state(tmp_path)


def test_a_corrupt_trunk_in_mlflow_is_detected_by_its_manifest(mlflow_store):
    from lth_sweep.orchestrator.mlflow_runs import SweepTracker
    from lth_sweep.orchestrator.trunk_sharing import TrunkUnusable, _log_trunk, load_trunk

    tracker = SweepTracker(mlflow_store, "faults", "unit", "s0")
    spec = tiny_trunk()
    run_id = tracker.child("trunk", spec, "trunk").info.run_id
    _log_trunk(tracker, run_id, train_trunk(spec, (2,)))
    stored = load_trunk(tracker.client, run_id, spec, (0, 2))
    assert set(stored.snapshots) == {2}
    files = {f.path for f in tracker.client.list_artifacts(run_id, "trunk")}
    assert files == {"trunk/init.safetensors", "trunk/final.safetensors", "trunk/rewind_2.safetensors", "trunk/manifest.json"}
    final = Path(urlparse(tracker.client.get_run(run_id).info.artifact_uri).path) / "trunk" / "final.safetensors"
    final.write_bytes(final.read_bytes()[:-100])
    with pytest.raises(TrunkUnusable, match=r"trunk/final\.safetensors is truncated or altered"):
        load_trunk(tracker.client, run_id, spec, (0, 2))
