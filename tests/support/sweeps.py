"""Running small real sweeps and reading them back: the session's Ray settings, a sweep config
written in a few lines, the environment of a sweep run in a child process, and the MLflow runs,
rounds and duplicates of a finished sweep (with MLflow's own client)."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from ray import tune

from lth_sweep.trainables.checkpoint_folder import latest_checkpoints
from lth_sweep.trainables.trial_payload import TrialConfig

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
#: `lth` as a child process, from this checkout
LTH = [sys.executable, "-m", "lth_sweep.orchestrator.cli"]

#: The session's Ray (the `ray_session` fixture), also for tests that restart it (test_mlflow_server.py).
#: One logical GPU (no device behind it): trials and trunks that ask for a share of one are
#: scheduled as on a GPU machine, and fall back to the CPU where torch sees no CUDA.
RAY_INIT = dict(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)

#: The experiment `sweep_yaml`'s sweeps log to, and `runs_of` reads by default.
EXPERIMENT = "faults"

#: The analysis actors' path at its cheapest: Grad-CAM and calibration on a few images.
TINY_ANALYSIS = {
    "gradcam": {"images": 32, "grid_images": 0}, "concepts": {"enabled": False}, "robustness": {"enabled": False},
    "mis": {"enabled": False}, "lime": {"enabled": False}, "flatness": {"enabled": False},
}


def sweep_yaml(name: str, pruning: list[dict], seeds=(0,), train: dict | None = None, analysis: dict | None = None,
               uri: str = "sqlite:///mlflow.db", max_failures: int = 3, slow: bool = False) -> str:
    """Rounds of a fraction of a second; `slow`: about a second (512 images, 4 epochs, Conv-2 width 8),
    long enough to kill a worker midway through one."""
    size, width, epochs = (512, 8, 4) if slow else (256, 4, 2)
    return yaml.safe_dump({
        "name": name,
        "seeds": list(seeds),
        "data": {"image_size": 16, "train_size": size, "test_size": 128, "ood_size": 0},
        "model": {"name": "conv2", "width": width},
        "train": {"epochs": epochs, "batch_size": 32, "lr": 0.01, **(train or {})},
        "pruning": pruning,
        "resources": {"max_failures": max_failures},
        "analysis": analysis or {"enabled": False},
        "tracking": {"uri": uri, "experiment": EXPERIMENT},
    })


def child_env(ray_tmp: Path) -> dict:
    """The environment of a sweep run as a child process: its own Ray temp dir (so it starts its own
    Ray), this checkout on the path, no tracking URI or Ray address inherited."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    return {**env, "RAY_TMPDIR": str(ray_tmp), "PYTHONPATH": str(ROOT), "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


def runs_of(client: MlflowClient, kind: str | None = None, experiment: str = EXPERIMENT) -> list:
    """The experiment's runs (all, or those of one `lth.kind`: sweep, trunk, lineage); none if the
    experiment does not exist yet."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    query = f"tags.`lth.kind` = '{kind}'" if kind else ""
    return client.search_runs([found.experiment_id], query, max_results=1000)


def rounds_of(client: MlflowClient, run_id: str, key: str = "sparsity") -> list[int]:
    """The steps (rounds) at which the run logged `key`, sorted, repeats kept."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def assert_nothing_duplicated(client: MlflowClient, experiment: str = EXPERIMENT) -> int:
    """One run per (kind, lth.id); every metric's steps unique. Returns the number of histories checked."""
    runs = runs_of(client, experiment=experiment)
    ids = [(r.data.tags["lth.kind"], r.data.tags["lth.id"]) for r in runs]
    assert len(ids) == len(set(ids)), f"duplicated runs: {sorted(ids)}"
    checked = 0
    for run in runs:
        for key in run.data.metrics:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert len(steps) == len(set(steps)), f"{run.data.tags['lth.kind']} {run.info.run_id}: {key} logged twice: {steps}"
            checked += 1
    return checked


def assert_equals_uninterrupted(client: MlflowClient, run, spec, folder: Path, validation_every: int = 0) -> None:
    """Every round's masks bit for bit, and every metric but wall-clock times, as a plain in-process run."""
    import pytest
    import torch
    from safetensors.torch import load_file

    from lth_sweep.orchestrator.plan import display_name
    from lth_sweep.trainables import record
    from lth_sweep.trainables.lineage import run_lineage
    from lth_sweep.trainables.trunk import train_trunk

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the trial (cpus_per_trial = 1)
    try:
        local = run_lineage(spec, train_trunk(spec.trunk, (spec.pruning.rewind_iteration,)), validation_every=validation_every)
    finally:
        torch.set_num_threads(threads)
    for result in local:
        index = result.state.round
        logged = load_file(client.download_artifacts(run.info.run_id, record.round_masks(index), str(folder)))
        assert logged.keys() == result.state.masks.keys()
        assert all(torch.equal(logged[k], result.state.masks[k]) for k in logged), f"{display_name(spec)} round {index}: masks differ"
        for key, value in result.metrics.items():
            if key.startswith("time/"):
                continue
            (metric,) = [m for m in client.get_metric_history(run.info.run_id, key) if m.step == index]
            assert metric.value == pytest.approx(value, rel=0, abs=0), f"{display_name(spec)} round {index}: {key}"


class Killer(tune.Callback):
    """A Tune callback in the driver: when a lineage reports round r of its plan (or a later one, after
    a restart replayed past r), SIGKILLs the worker process that reported it. A trial checkpoints a
    round (`trainables.checkpoint_folder`) before it reports it (an analysed one: reports it after
    checkpointing round r + 1, once its analysis landed), and the worker goes on without waiting for
    the driver; r is never the lineage's last round, so every kill lands mid-round in a lineage with
    work left, however fast rounds are. `killed` holds (lineage id, round reported, "host:pid"), the
    form of the runs' `lth.worker` tags. `before_kill` gets the lineage id and its latest checkpoint
    folder (of round r, or r + 1 on an analysed lineage)."""

    def __init__(self, plan_ids: list[str], kills: dict[int, list[int]], before_kill=None, experiment: str = ""):
        self.before_kill = before_kill  # (lineage id, the round's checkpoint folder) -> None
        self.experiment = experiment  # the sweep's Tune experiment folder, for before_kill
        self.todo = {plan_ids[index]: list(rounds) for index, rounds in kills.items()}
        self.killed: list[tuple[str, int, str]] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        lineage_id = TrialConfig.of(trial.config).lineage_id
        rounds = self.todo.get(lineage_id)
        if not rounds or "round" not in result or result["round"] < rounds[0]:
            return
        assert result["round"] < TrialConfig.of(trial.config).rounds, (lineage_id, result["round"])
        rounds.pop(0)
        round_index, pid, host = int(result["round"]), result["pid"], result["hostname"]
        if self.before_kill:
            folder, checkpointed = latest_checkpoints(self.experiment, [lineage_id])[lineage_id]
            assert checkpointed in (round_index, round_index + 1), (lineage_id, checkpointed, round_index)
            self.before_kill(lineage_id, Path(folder))
        os.kill(pid, signal.SIGKILL)
        self.killed.append((lineage_id, round_index, f"{host}:{pid}"))
