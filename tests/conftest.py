"""Shared fixtures: one real Ray for the whole session, tiny real specs."""
from __future__ import annotations

import os

import pytest

from trainables.specs import DataSpec, LineageSpec, ModelSpec, TrainSpec, TrunkSpec

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


#: The session's Ray, also for tests that restart it (test_mlflow_server.py). One logical GPU (no
#: device behind it): trials and trunks that ask for a share of one are scheduled as on a GPU
#: machine, and fall back to the CPU where torch sees no CUDA.
RAY_INIT = dict(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)


@pytest.fixture(scope="session")
def ray_session():
    import ray

    ray.init(**RAY_INIT)
    yield ray
    ray.shutdown()


def tiny_trunk(seed: int = 0, **train) -> TrunkSpec:
    """A trunk that trains in well under a second: 16 px shapes, a narrow Conv-2, one epoch."""
    return TrunkSpec(
        data=DataSpec(image_size=16, train_size=256, test_size=128, ood_size=0),
        model=ModelSpec(name="conv2", width=4),
        train=TrainSpec(**{"epochs": 1, "batch_size": 32, "lr": 0.01, **train}),
        seed=seed,
    )


def tiny_lineage(seed: int = 0, train: dict | None = None, **pruning) -> LineageSpec:
    pruning = {"method": "imp", "rate": 0.5, "rounds": 2, **pruning}
    return LineageSpec(trunk=tiny_trunk(seed, **(train or {})), pruning=pruning)
