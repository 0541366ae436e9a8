"""`record.batch_at` reads back one batch `record.log_metrics` logged at a step (what a replayed
analysis answers a restarted trial with), not the other batches logged at the same step."""
from __future__ import annotations

import time

from mlflow.tracking import MlflowClient

from lth_sweep.trainables import record


def test_the_batch_a_marker_closed_is_read_back_alone(mlflow_store):
    client = MlflowClient(mlflow_store)
    run_id = client.create_run(client.create_experiment("batches")).info.run_id
    record.log_metrics(client, run_id, 1, {"test/acc": 0.9, "sparsity": 0.5}, marker=record.ROUND_DONE)
    time.sleep(0.01)  # batches are told apart by their timestamp (ms)
    record.log_metrics(client, run_id, 1, {"xai/gradcam_rank_corr": 0.7, "analysis/seconds": 2.0}, marker=record.ANALYSIS_DONE)
    time.sleep(0.01)
    record.log_metrics(client, run_id, 2, {"test/acc": 0.8, "sparsity": 0.75}, marker=record.ROUND_DONE)
    record.log_metrics(client, run_id, 2, {"xai/gradcam_rank_corr": 0.6, "analysis/seconds": 3.0}, marker=record.ANALYSIS_DONE)

    assert record.batch_at(client, run_id, 1, record.ANALYSIS_DONE) == {"xai/gradcam_rank_corr": 0.7, "analysis/seconds": 2.0}
    assert record.batch_at(client, run_id, 1, record.ROUND_DONE) == {"test/acc": 0.9, "sparsity": 0.5}
    assert record.batch_at(client, run_id, 3, record.ANALYSIS_DONE) == {}  # not measured: nothing
