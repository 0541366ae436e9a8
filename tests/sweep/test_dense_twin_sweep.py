"""The dense twins in a real sweep (the session's Ray, MLflow on SQLite): off, no twin is trained;
on, a resumed sweep adds each trunk's twin to the trunk's run (`twin/<metric>` for every
consistency metric measured, and `twin/test/acc`), the twin the library trains in-process; resumed
again, it is neither trained nor logged twice. The sweep id is the same throughout."""
from __future__ import annotations

import io

import pytest
import torch
from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import make_plan
from lth_sweep.orchestrator.progress import Console
from lth_sweep.orchestrator.sweep import run_sweep
from tests.support.sweeps import TINY_ANALYSIS, assert_nothing_duplicated, runs_of, sweep_yaml
from lth_sweep.trainables import record
from lth_sweep.trainables.record import TWIN_PREFIX
from lth_sweep.trainables.twin import train_twin

pytestmark = pytest.mark.slow

ANALYSIS = {**TINY_ANALYSIS, "concepts": {"train_images": 100, "eval_images": 40}}
CONSISTENCY = ["xai/gradcam_rank_corr", "xai/gradcam_iou_top10", "xai/gradcam_cosine", "xai/concept_jaccard_top3", "xai/concept_kendall_tau"]


def sweep(path, overrides=()) -> tuple[bool, str]:
    """Runs the sweep at `path`; (succeeded, what it said)."""
    said = io.StringIO()
    outcome = run_sweep(make_plan(load_config(path, list(overrides))), console=Console(said))
    return outcome.succeeded, said.getvalue()


def reopen_lineages(client: MlflowClient) -> None:
    """Every lineage KILLED, as an interrupted sweep leaves them: the next run resumes the sweep."""
    for run in runs_of(client, record.LINEAGE_KIND):
        client.set_terminated(run.info.run_id, "KILLED")


def twin_history(client: MlflowClient, run_id: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, f"{TWIN_PREFIX}xai/gradcam_rank_corr")]


def test_twins_off_then_added_by_a_resumed_sweep_then_never_twice(ray_session, tmp_path, monkeypatch):
    path = tmp_path / "sweep.yaml"
    path.write_text(sweep_yaml("twins", [{"rate": 0.5, "rounds": 2, "rewind": "init"}], seeds=(0, 1), analysis=ANALYSIS))
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    plan = make_plan(load_config(path))
    assert make_plan(load_config(path, ["analysis.twin=false"])).sweep_id == plan.sweep_id

    ok, said = sweep(path, ["analysis.twin=false"])
    assert ok and "dense twin" not in said
    trunks = runs_of(client, record.TRUNK_KIND)
    assert len(trunks) == 2
    for run in trunks:
        assert "floor/xai/gradcam_rank_corr" in run.data.metrics  # the other seed's trunk, as before
        assert not [key for key in run.data.metrics if key.startswith(TWIN_PREFIX)]

    reopen_lineages(client)
    ok, said = sweep(path)
    assert ok and said.count("dense twin (same init, another data order) measured") == 2, said
    assert len(runs_of(client, record.TRUNK_KIND)) == 2 and len(runs_of(client, record.SWEEP_KIND)) == 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the twin's task (analysis.cpus_per_actor 0: one thread)
    try:
        for run in runs_of(client, record.TRUNK_KIND):
            metrics = run.data.metrics
            assert {key for key in metrics if key.startswith(TWIN_PREFIX)} == {
                f"{TWIN_PREFIX}{name}" for name in [*CONSISTENCY, "test/acc"]
            }
            for name in CONSISTENCY:
                assert f"floor/{name}" in metrics  # the second, labelled line stays
                assert -1.0 <= metrics[f"{TWIN_PREFIX}{name}"] <= 1.0
            spec, _ = plan.trunks[run.data.tags[record.ID]]
            assert metrics[f"{TWIN_PREFIX}test/acc"] == train_twin(spec).metrics["test/acc"]  # that twin, and no other
            assert twin_history(client, run.info.run_id)[0][0] == 0  # at step 0, with the trunk's dense values
    finally:
        torch.set_num_threads(threads)
    logged = {run.info.run_id: twin_history(client, run.info.run_id) for run in runs_of(client, record.TRUNK_KIND)}

    reopen_lineages(client)
    ok, said = sweep(path)
    assert ok and "dense twin" not in said  # found in MLflow: neither trained nor measured again
    assert {run.info.run_id: twin_history(client, run.info.run_id) for run in runs_of(client, record.TRUNK_KIND)} == logged
    assert assert_nothing_duplicated(client) > 0
