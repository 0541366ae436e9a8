"""A sweep's Tune experiment folder reads with Ray's own tools: `ExperimentAnalysis(path)` and
`Tuner.restore(path, trainable).get_results()` see every round of every lineage, with every metric
its analysis measured and the lineage's label, including a lineage whose worker was killed and
which Tune restarted from its checkpoint (its replayed round's analysis read back from MLflow); the
values are those MLflow holds."""
from __future__ import annotations

from pathlib import Path

import pytest
from ray import tune
from mlflow.tracking import MlflowClient
from ray.tune import ExperimentAnalysis

from lth_sweep.analysis.query import load_sweep
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import make_plan
from lth_sweep.orchestrator.sweep import run_sweep
from lth_sweep.orchestrator.tuner import experiment_name
from tests.support.sweeps import TINY_ANALYSIS, Killer, runs_of, sweep_yaml
from lth_sweep.trainables.trial import lineage_trial
from lth_sweep.trainables.trial_payload import TrialConfig

pytestmark = pytest.mark.slow

PRUNING = [{"method": "imp", "rate": 0.5, "rounds": 3}, {"method": "omp", "rate": 0.5, "rounds": 2}]


def test_every_round_of_every_lineage_reads_with_ray_s_own_tools(ray_session, tmp_path, monkeypatch):
    (tmp_path / "sweep.yaml").write_text(sweep_yaml("ray-native", PRUNING, analysis=TINY_ANALYSIS, slow=True))
    monkeypatch.chdir(tmp_path)
    plan = make_plan(load_config(tmp_path / "sweep.yaml"))
    rounds = {spec.id: list(range(1, spec.pruning.rounds + 1)) for spec in plan.lineages}
    killer = Killer([spec.id for spec in plan.lineages], {0: [1]})  # imp's worker dies in round 3 (row 1 waits for round 2)
    outcome = run_sweep(plan, callbacks=[killer])
    assert outcome.succeeded and len(killer.killed) == 1

    path = str(tmp_path / "lth-runs" / experiment_name(plan))  # Ray takes an absolute path or a URI
    mlflow = load_sweep("ray-native", f"sqlite:///{tmp_path / 'mlflow.db'}").set_index(["lineage", "round"])
    analysis = ExperimentAnalysis(path)
    frames = {TrialConfig.of(trial.config).lineage_id: analysis.trial_dataframes[trial.trial_id] for trial in analysis.trials}
    assert set(frames) == set(rounds)
    labels = {spec.id: spec.pruning.label for spec in plan.lineages}
    assert {trial.config["trial"]["lineage_id"]: trial.config["trial"]["label"] for trial in analysis.trials} == labels  # README's snippet
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_ids = {run.data.tags["lth.id"]: run.info.run_id for run in runs_of(client, "lineage")}
    for lineage_id, frame in frames.items():
        assert frame["round"].tolist() == rounds[lineage_id], lineage_id  # each round once, the killed one too
        logged = mlflow.loc[lineage_id]["test/acc"]
        assert frame["test/acc"].tolist() == logged.loc[frame["round"]].tolist()
        analysed = [key for key in client.get_run(run_ids[lineage_id]).data.metrics if key.startswith(("xai/", "calib/", "se/", "analysis/"))]
        assert {"xai/gradcam_rank_corr", "calib/ece", "se/xai/gradcam_rank_corr", "analysis/seconds"} <= set(analysed)
        for key in analysed:  # every metric its analysis measured, at every round, as MLflow holds it
            history = {m.step: m.value for m in client.get_metric_history(run_ids[lineage_id], key)}
            assert frame[key].tolist() == [history[r] for r in rounds[lineage_id]], (lineage_id, key)

    grid = tune.Tuner.restore(path, trainable=lineage_trial).get_results()  # reads; trains nothing
    assert not grid.errors and len(grid) == len(rounds)
    for result in grid:
        lineage_id = TrialConfig.of(result.config).lineage_id
        assert result.metrics["round"] == rounds[lineage_id][-1] and "xai/gradcam_rank_corr" in result.metrics
        assert result.metrics_dataframe["round"].tolist() == rounds[lineage_id]
        assert result.checkpoint is None  # the trial keeps its own (trainables/checkpoint_folder.py)
        assert [p.name for p in Path(result.path).glob("checkpoint_*")] == [f"checkpoint_{rounds[lineage_id][-1]:06d}"]

    # A copy of the folder restored elsewhere cannot write into this sweep's store: the store is
    # handed to trials through tune.with_parameters, which Tune does not save in the folder.
    stored = [file for file in (tmp_path / "lth-runs").rglob("*") if file.is_file() and str(tmp_path / "mlflow.db").encode() in file.read_bytes()]
    assert not stored, stored
