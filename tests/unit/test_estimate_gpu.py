"""The dry run's training time on GPUs (orchestrator/estimate.py): small networks are bound by
kernel launches, per trial and for the GPU as a whole, and `--machine` estimates for a machine
other than this one."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lth_sweep.orchestrator import estimate
from lth_sweep.orchestrator.cli import main
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.estimate import Machine, parametrised_layers, training_seconds
from lth_sweep.orchestrator.plan import make_plan
from lth_sweep.trainables.data.describe import describe

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
GPU_CONFIG = CONFIGS / "clutter-gpu.yaml"


def lineage_jobs(overrides: list[str]):
    config = load_config(GPU_CONFIG, overrides)
    plan = make_plan(config, check_paths=False)
    return config, [(spec.trunk, estimate.lineage_cost(spec)) for spec in plan.lineages]


def test_resnet20_counts_its_kernels():
    trunk = make_plan(load_config(GPU_CONFIG, ["seeds=[0]"]), check_paths=False).lineages[0].trunk
    # 19 convs + 19 batch norms, 2 projection shortcuts (conv + norm), the classifier
    assert parametrised_layers(trunk.model, describe(trunk.data)) == 43


def test_one_small_network_on_a_gpu_is_bound_by_its_launches():
    config, jobs = lineage_jobs(["seeds=[0]", "pruning=[{method: omp, rate: 0.5, rounds: 6}]", "resources.gpus_per_trial=1"])
    (spec, cost), = jobs
    flops_bound = cost.flops / estimate.speed(spec.train, 1, 1)
    launches = cost.iterations * 43 * estimate.GPU_STEP_SECONDS_PER_LAYER
    assert launches > 10 * flops_bound  # ResNet-20 at batch 128 keeps a whole GPU waiting on launches
    seconds = training_seconds(jobs, config.resources, Machine(16, 1))
    assert seconds == pytest.approx(launches)
    # alone on a GPU: the 67 iterations/s issue 14 measured
    assert cost.iterations / seconds == pytest.approx(67, rel=1e-9)


def test_trials_sharing_a_gpu_are_bound_by_what_it_serves_in_all():
    config, jobs = lineage_jobs([])
    assert len(jobs) == 18
    seconds = training_seconds(jobs, config.resources, Machine(16, 1))
    layer_steps = sum(cost.iterations for _, cost in jobs) * 43
    assert seconds == pytest.approx(layer_steps * estimate.GPU_SHARED_SECONDS_PER_LAYER)
    # two GPUs serve twice the launches, down to the longest lineage (the control, training twice)
    config, jobs = lineage_jobs(["resources.max_concurrent_trials=40"])
    longest = max(cost.flops / estimate.speed(spec.train, 1, 0.05) for spec, cost in jobs)
    assert seconds / 2 < longest < seconds
    assert training_seconds(jobs, config.resources, Machine(32, 2)) == pytest.approx(longest)


def test_cpu_training_has_no_launch_floor():
    config, jobs = lineage_jobs(["train.device=cpu", "resources.gpus_per_trial=0", "analysis.gpus_per_actor=0"])
    seconds = training_seconds(jobs, config.resources, Machine(16, 0))
    per_job = [cost.flops / estimate.speed(spec.train, 1, 0) for spec, cost in jobs]
    assert seconds == pytest.approx(estimate.phase_seconds(per_job, 12))


def test_machine_parses_cpus_and_gpus():
    assert (Machine.parse("16:1").cpus, Machine.parse("16:1").gpus) == (16, 1)
    assert Machine.parse("8").gpus == 0
    for bad in ("", "16:x", "0:1", "4:-1", "many"):
        with pytest.raises(ValueError, match="--machine"):
            Machine.parse(bad)


def test_dry_run_on_the_machine_named(capsys):
    assert main(["sweep", str(GPU_CONFIG), "--dry-run", "--machine", "16:1"]) == 0
    wall = [row for row in capsys.readouterr().out.splitlines() if row.startswith("wall time (rough): ")][0]
    assert "12 at a time" in wall and "on 16 CPUs and 1 GPU;" in wall
    assert "ms per step and layer of a trial" in wall
    minutes = float(re.search(r"wall time \(rough\): ([\d.]+) min", wall).group(1))
    assert 5 < minutes < 15


@pytest.mark.parametrize(
    "args,message",
    [
        (["--machine", "16:1"], "--machine describes where a dry run estimates the wall time: add --dry-run"),
        (["--dry-run", "--machine", "16:x"], "--machine '16:x': expected CPUS[:GPUS], e.g. 16:1"),
    ],
)
def test_a_bad_machine_is_refused_by_name(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(GPU_CONFIG), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
