"""Analysis actors that ask Ray for a GPU, in the session's Ray, whose one GPU is logical
(tests/support/sweeps.py RAY_INIT: num_gpus=1): Ray schedules the actor and assigns it GPU 0,
torch sees no CUDA here, so the actor measures on the CPU, says so, and measures exactly what an
actor without a GPU measures. On a machine with CUDA the same actor would measure on the GPU (the
rule: tests/unit/test_analysis_device.py); that run has not been made."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from lth_sweep.analysis.actors import AnalysisPool
from lth_sweep.analysis.analysis_spec import AnalysisSpec
from lth_sweep.analysis.device import DEVICE_TAG
from lth_sweep.orchestrator.ray_session import ClusterTooSmall, check_fits
from tests.support.tiny import tiny_trunk
from lth_sweep.trainables.trunk import train_trunk

SMALL = {
    "gradcam": {"images": 32, "grid_images": 0},
    "robustness": {"images": 32, "pgd_steps": 2, "corruptions": ["gaussian_noise", "jpeg_compression"], "severities": [1]},
    "flatness": {"images": 16, "iterations": 2, "bisections": 2, "noise_draws": 1},
    "concepts": {"train_images": 100, "eval_images": 40},
    "lime": {"images": 1, "samples": 8},
    "mis": {"enabled": False},
}


@pytest.mark.slow
def test_an_actor_given_a_logical_gpu_measures_on_the_cpu_says_so_and_agrees(ray_session, mlflow_store):
    if torch.cuda.is_available():
        pytest.skip("torch sees CUDA here: the actor would measure on the GPU, not what this test checks")
    trunk = ray_session.put(train_trunk(tiny_trunk()))
    client = MlflowClient(mlflow_store)
    experiment = client.create_experiment("gpu-logical")
    pools = {
        gpus: AnalysisPool(AnalysisSpec.model_validate({**SMALL, "gpus_per_actor": gpus}), mlflow_store)
        for gpus in (0.5, 0.0)
    }
    try:
        placements = {gpus: pool.placements()[0] for gpus, pool in pools.items()}
        assert placements[0.5] == "cpu: 1 threads (Ray GPU ids 0 assigned, but torch sees no CUDA device)"
        assert placements[0.0] == "cpu: 1 threads"
        runs = {gpus: client.create_run(experiment).info.run_id for gpus in pools}
        references = ray_session.get([pools[gpus].actors[0].reference.remote(trunk, runs[gpus]) for gpus in pools])
    finally:
        for pool in pools.values():
            pool.shutdown()
    on_gpu_actor, on_cpu_actor = ({k: v for k, v in ref.values.items() if not k.startswith("analysis/seconds")} for ref in references)
    np.testing.assert_equal(on_gpu_actor, on_cpu_actor)  # bit for bit (NaN equal to NaN): same device, same seeds
    measured = {"xai/gradcam_energy_in_object", "adv/pgd_acc", "corrupt/acc", "flat/hessian_weights", "calib/ece",
                "xai/lime_fidelity", "xai/concept_pcbm_acc"}
    assert measured <= set(on_gpu_actor)
    assert torch.equal(references[0].gradcam, references[1].gradcam)
    for gpus, run_id in runs.items():
        run = client.get_run(run_id)
        assert run.data.tags[DEVICE_TAG] == placements[gpus]  # the device used, on the run it was logged to
        assert run.data.metrics["calib/ece"] == on_cpu_actor["calib/ece"]  # logged by the actor, at step 0


@pytest.mark.slow
def test_an_actor_larger_than_the_cluster_stops_before_anything_runs(ray_session):
    cpus = ray_session.cluster_resources()["CPU"]
    too_large = AnalysisSpec(cpus_per_actor=cpus + 1)
    with pytest.raises(ClusterTooSmall, match=rf"^analysis\.cpus_per_actor: {cpus + 1:g} CPUs per analysis actor, but the Ray cluster has {cpus:g};"):
        check_fits(1, 0, too_large)
    check_fits(1, 0, AnalysisSpec(gpus_per_actor=1))  # the session's one (logical) GPU holds it
    check_fits(1, 0, AnalysisSpec(cpus_per_actor=cpus + 1, enabled=False))  # no analysis, no actors
