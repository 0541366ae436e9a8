"""A small real sweep: real Ray Tune, real MLflow (SQLite in a temp dir), read back with MLflow's
own client. Also: rerunning duplicates nothing. Trials whose workers die mid-round:
test_faults.py (masks and metrics bit for bit as an uninterrupted run) and
test_ray_native_results.py (Tune's own records of the restarted trial); a diverging trunk:
test_faults.py."""
from __future__ import annotations

import os

import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from lth_sweep.orchestrator.cli import main
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import make_plan
from tests.support.sweeps import runs_of
from lth_sweep.trainables.lineage import run_lineage
from lth_sweep.trainables.trunk import train_trunk

pytestmark = pytest.mark.slow

CONFIG = """
name: e2e
seeds: [0, 1]
data: {image_size: 16, train_size: 256, test_size: 128, ood_size: 0}
model: {name: conv2, width: 4}
train: {epochs: 1, batch_size: 32, lr: 0.01, device: auto}
pruning:
  - {rate: 0.5, rounds: 3, rewind: init}
  - {rate: 0.5, rounds: 3, rewind: 3}
analysis:
  gradcam: {images: 32, grid_images: 4}
  concepts: {train_images: 100, eval_images: 50}
  lime: {images: 2, samples: 16}
  mis: {images: 60, units: 4}
  robustness: {images: 32, pgd_steps: 2, severities: [1, 5]}
  flatness: {images: 16, iterations: 2, bisections: 2}
resources: {gpus_per_trial: 0.5}  # of the test session's one logical GPU: two trials share it
tracking: {uri: "sqlite:///mlflow.db", experiment: e2e}
"""
EXPERIMENT = "e2e"  # CONFIG's tracking.experiment
ANALYSED = ["xai/gradcam_rank_corr", "xai/gradcam_energy_in_object", "xai/concept_jaccard_top3", "xai/concept_recovery",
            "xai/lime_fidelity", "xai/mis", "calib/ece", "ood/auroc_noise", "adv/fgsm_acc", "corrupt/mce",
            "flat/hessian_weights", "analysis/seconds"]


@pytest.fixture(scope="module")
def sweep(ray_session, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    (workdir / "sweep.yaml").write_text(CONFIG)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        code = main(["sweep", "sweep.yaml"])
    finally:
        os.chdir(cwd)
    return workdir, code, MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def test_sweep_lands_in_mlflow_as_parent_trunks_and_lineages(sweep):
    workdir, code, client = sweep
    assert code == 0
    (parent,) = runs_of(client, "sweep", EXPERIMENT)
    assert parent.info.status == "FINISHED" and parent.data.tags["lth.sweep"] == "e2e"
    trunks, lineages = runs_of(client, "trunk", EXPERIMENT), runs_of(client, "lineage", EXPERIMENT)
    assert len(trunks) == 2 and len(lineages) == 4  # one trunk per seed, shared by both methods
    plan = make_plan(load_config(workdir / "sweep.yaml"))
    assert {r.data.tags["lth.id"] for r in lineages} == {s.id for s in plan.lineages}
    assert {r.data.tags["lth.id"] for r in trunks} == set(plan.trunks)
    for run in trunks + lineages:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        # half of the session's logical GPU reached trunk tasks and trials alike; no CUDA here
        assert run.data.tags["lth.device"].startswith("cpu: ") and "Ray GPU ids 0 assigned" in run.data.tags["lth.device"]
    for run in lineages:
        assert run.data.tags["lth.method"] == "imp"
        assert run.data.params["pruning.rate"] == "0.5"
        for key in ("test/acc", "test/loss", "sparsity", "sparsity/nominal"):
            history = client.get_metric_history(run.info.run_id, key)
            # test/acc and test/loss start at step 0 with the trunk's value: the lineage's charts start from dense
            assert sorted(m.step for m in history) == ([0, 1, 2, 3] if key.startswith("test/") else [1, 2, 3]), key
        (trunk,) = [t for t in trunks if t.data.tags["lth.id"] == run.data.tags["lth.trunk"]]
        dense_acc = [m.value for m in client.get_metric_history(run.info.run_id, "test/acc") if m.step == 0]
        assert dense_acc == [trunk.data.metrics["test/acc"]]
        (queued,) = client.get_metric_history(run.info.run_id, "time/queued_seconds")  # MLflow's Duration counts it
        assert queued.step == 0 and queued.value >= 0
        assert run.data.tags["lth.seed"] == run.data.params["trunk.seed"] == trunk.data.tags["lth.seed"]
        sparsity = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "sparsity")}
        assert sparsity[3] == pytest.approx(0.875, abs=1e-3)
        artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "masks")}
        assert artifacts == {f"masks/round_0{i}.safetensors" for i in (1, 2, 3)}
        assert {f.path for f in client.list_artifacts(run.info.run_id, "ticket")} == {
            "ticket/weights.safetensors", "ticket/masks.safetensors"
        }
    # one colour per method in MLflow's charts (the figures' colours), the trunks another
    colors = {(r.data.tags["lth.label"], r.data.tags["mlflow.runColor"]) for r in lineages}
    assert len(colors) == len({label for label, _ in colors}) == 2
    assert {t.data.tags["mlflow.runColor"] for t in trunks} == {"#333333"}
    assert {f.path for f in client.list_artifacts(parent.info.run_id, "plots")} == {
        f"plots/{name}_vs_sparsity.png" for name in (
            "accuracy", "generalisation", "robustness", "ood", "calibration", "geometry", "gradcam", "concepts", "lime_and_mis"
        )
    }
    description = parent.data.tags["mlflow.note.content"]  # the summary, as a Markdown table that wraps
    assert "| \u00a0imp@3 s1\u00a0 | \u00a03/3\u00a0 |" in description and "|---|" in description and "```" not in description
    assert not [key for key in parent.data.metrics if key.startswith("methods/")]  # runs grouped by label show these
    assert client.get_experiment_by_name("e2e").tags["mlflow.experimentKind"] == "custom_model_development"


def test_every_round_of_every_lineage_is_analysed_against_its_trunk(sweep):
    _, _, client = sweep
    for run in runs_of(client, "lineage", EXPERIMENT):
        for key in ANALYSED:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == [1, 2, 3], (run.data.tags["lth.label"], key)
        artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "xai")}
        assert artifacts == {f"xai/{kind}_round_0{i}.{ext}" for i in (1, 2, 3) for kind, ext in (("gradcam", "png"), ("concepts", "csv"), ("gradcam_per_class", "csv"))}
    for trunk in runs_of(client, "trunk", EXPERIMENT):  # the dense reference, at step 0
        assert [m.step for m in client.get_metric_history(trunk.info.run_id, "xai/gradcam_energy_in_object")] == [0]
        assert trunk.data.metrics["corrupt/mce"] == 1.0
        # the noise floor: each trunk measured against the other seed's reference, once, at step 0
        floor = {key: value for key, value in trunk.data.metrics.items() if key.startswith("floor/")}
        assert set(floor) >= {"floor/xai/gradcam_rank_corr", "floor/xai/concept_jaccard_top3"}
        assert [m.step for m in client.get_metric_history(trunk.info.run_id, "floor/xai/gradcam_rank_corr")] == [0]
        assert -1 <= floor["floor/xai/gradcam_rank_corr"] < 1  # two seeds never agree perfectly


def test_query_and_tickets_read_the_sweep_back(sweep, capsys):
    import json

    workdir, _, client = sweep
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    assert main(["query", "--sweep", "e2e", "--tracking-uri", uri, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 * 3  # lineages x rounds
    assert {(r["seed"], r["label"]) for r in rows} == {(0, "imp"), (1, "imp"), (0, "imp@3"), (1, "imp@3")}
    one = [r for r in rows if r["label"] == "imp@3" and r["seed"] == 1 and r["round"] == 2][0]
    (run,) = [r for r in runs_of(client, "lineage", EXPERIMENT) if r.info.run_id == one["run_id"]]
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "xai/gradcam_rank_corr")}
    assert one["xai/gradcam_rank_corr"] == history[2]
    assert one["dense/test/acc"] == client.get_run(client.search_runs(
        [run.info.experiment_id], f"tags.`lth.id` = '{run.data.tags['lth.trunk']}'")[0].info.run_id).data.metrics["test/acc"]

    assert main(["query", "--sweep", "e2e", "--tracking-uri", uri, "--where", "label == 'imp' and round == 3", "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 2  # header + one row per seed

    assert main(["tickets", "--sweep", "e2e", "--tracking-uri", uri, "--format", "json"]) == 0
    verdicts = json.loads(capsys.readouterr().out)
    (configuration,) = verdicts["configurations"]  # one trunk configuration, two seeds
    assert set(verdicts["lth_pass"][configuration["config"]]) == {"imp", "imp@3"}
    acc = {row["method"]: row for row in verdicts["metrics"]["test/acc"]}
    assert acc["imp"]["seeds"] == 2 and len(acc["imp"]["rounds"]) == 3
    # two seeds: no confidence is claimed anywhere, and every verdict that reached a round says why
    for rows in verdicts["metrics"].values():
        for row in rows:
            assert row["confident_sparsity"] is None
            assert row["not_confident_because"] in (None, "2 seed(s): confidence needs 3+")
    assert all(not v["confident_sparsities"] for v in verdicts["lth_pass"][configuration["config"]].values())
    energy = configuration["metrics"]["xai/gradcam_energy_in_object"]["floors"][0]
    assert energy["trunks"] == 2 and "2 dense seeds" in energy["source"]
    assert main(["tickets", "--sweep", "e2e", "--tracking-uri", uri, "--metric", "xai/gradcam_rank_corr", "--format", "json"]) == 0
    consistency = json.loads(capsys.readouterr().out)["configurations"][0]["metrics"]["xai/gradcam_rank_corr"]
    assert any(f["source"] == "another seed's trunk, from 1 pair of seeds" for f in consistency["floors"])
    assert consistency["margin"]["source"] == "registry default"
    assert main(["tickets", "--sweep", "e2e", "--tracking-uri", uri]) == 0
    text = capsys.readouterr().out
    assert "LTH-PASS" in text and "=== configuration " in text
    assert main(["tickets", "--sweep", "e2e", "--tracking-uri", uri, "--format", "markdown"]) == 0
    assert "| dense (reference) |" in capsys.readouterr().out
    assert main(["tickets", "--sweep", "e2e", "--tracking-uri", uri, "--margin", "test/acc=abc"]) == 2
    assert "--margin" in capsys.readouterr().err
    assert main(["query", "--sweep", "nope", "--tracking-uri", uri]) == 2
    assert "no sweep named 'nope'" in capsys.readouterr().err


def test_reading_the_database_directly_gives_the_client_s_table(sweep):
    import pandas as pd

    from lth_sweep.analysis.query import load_sweep

    workdir, _, _ = sweep
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    direct, through_client = load_sweep("e2e", uri, "e2e"), load_sweep("e2e", uri, "e2e", sql=False)
    assert len(direct) == 4 * 3 and "xai/gradcam_rank_corr" in direct and "dense/calib/ece" in direct
    pd.testing.assert_frame_equal(direct, through_client, check_like=True)  # the same, column order aside


def test_logged_masks_equal_an_in_process_run_bit_for_bit(sweep):
    workdir, _, client = sweep
    plan = make_plan(load_config(workdir / "sweep.yaml"))
    spec = plan.lineages[1]
    (run,) = [r for r in runs_of(client, "lineage", EXPERIMENT) if r.data.tags["lth.id"] == spec.id]
    local = run_lineage(spec, train_trunk(spec.trunk, (spec.pruning.rewind_iteration,)))
    for result in local:
        path = client.download_artifacts(run.info.run_id, f"masks/round_{result.state.round:02d}.safetensors", str(workdir))
        logged = load_file(path)
        assert all(torch.equal(logged[k], result.state.masks[k]) for k in result.state.masks)
    acc = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "test/acc") if m.step > 0}
    assert acc == {r.state.round: r.metrics["test/acc"] for r in local}


def test_rerunning_the_sweep_trains_nothing_and_duplicates_nothing(sweep, capsys):
    workdir, _, client = sweep
    before = {r.info.run_id for r in runs_of(client, experiment=EXPERIMENT)}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        assert main(["sweep", "sweep.yaml", "--resume"]) == 0
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert err.count("already finished") == 4 and "training" not in err
    assert {r.info.run_id for r in runs_of(client, experiment=EXPERIMENT)} == before
    for run in runs_of(client, "lineage", EXPERIMENT):
        assert len(client.get_metric_history(run.info.run_id, "test/acc")) == 1 + 3  # the dense value, three rounds


def test_a_trial_larger_than_the_cluster_stops_at_once_naming_the_resource(ray_session, tmp_path, monkeypatch, capsys):
    (tmp_path / "sweep.yaml").write_text(CONFIG.replace("gpus_per_trial: 0.5", "gpus_per_trial: 2"))
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "sweep.yaml"]) == 2  # instead of Tune waiting forever for 2 GPUs
    err = capsys.readouterr().err
    assert "resources.gpus_per_trial: 2 GPUs per trial, but the Ray cluster has 1" in err and "Traceback" not in err
    assert not (tmp_path / "mlflow.db").exists()  # nothing written
