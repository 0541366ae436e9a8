"""The device a Ray task trains on (trainables.device), inside a task of the session's Ray. Device,
precision and layout outside Ray: tests/unit/test_device.py."""
import pytest

from lth_sweep.trainables.device import Runtime, ray_gpu_ids
from lth_sweep.trainables.specs import TrainSpec


@pytest.mark.slow
def test_a_ray_task_that_asked_for_no_gpu_trains_on_the_cpu(ray_session):
    @ray_session.remote(num_cpus=0)
    def resolved():
        return ray_gpu_ids(), str(Runtime.of(TrainSpec(device="auto")).device)

    assert ray_session.get(resolved.remote()) == ([], "cpu")
