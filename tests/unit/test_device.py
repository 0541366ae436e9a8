"""Device, precision, memory layout and loading (trainables.device), on the CPU: the same code
runs unchanged on a GPU, and the defaults change nothing. Inside a Ray task:
tests/sweep/test_device_on_ray.py."""
import pytest
import torch

from tests.support.datasets import write_imagefolder
from tests.support.tiny import tiny_lineage, tiny_trunk
from lth_sweep.trainables.data import LazySplit, load_dataset
from lth_sweep.trainables.device import DeviceError, DeviceSplit, Runtime, choose_device, cpu_state, on_device, ray_gpu_ids
from lth_sweep.trainables.lineage import run_lineage
from lth_sweep.trainables.models import build_model
from lth_sweep.trainables.specs import DataSpec, ModelSpec, TrainSpec
from lth_sweep.trainables.training import BatchPlan, learning_rate, train
from lth_sweep.trainables.trunk import build_for, cached_dataset, train_trunk

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    "requested,cuda,ray_gpus,expected",
    [
        ("cpu", True, None, CPU),
        ("auto", False, None, CPU),
        ("auto", True, None, CUDA),  # outside Ray: whatever torch sees
        ("auto", True, [], CPU),  # a Ray trial given no GPU, on a GPU node: not GPU 0, unscheduled
        ("auto", True, ["0"], CUDA),  # a Ray trial given a (fraction of a) GPU
        ("cuda", True, ["1"], CUDA),
    ],
)
def test_device_follows_what_torch_sees_and_what_ray_assigned(requested, cuda, ray_gpus, expected):
    assert choose_device(requested, cuda, ray_gpus) == expected


@pytest.mark.parametrize("cuda,ray_gpus,says", [(False, None, "no CUDA"), (True, [], "no GPU")])
def test_cuda_where_there_is_none_is_a_clear_error(cuda, ray_gpus, says):
    with pytest.raises(DeviceError, match=says):
        choose_device("cuda", cuda, ray_gpus)


def test_outside_a_ray_worker_nobody_assigned_gpus():
    assert ray_gpu_ids() is None  # also with a Ray driver up in this process: a driver is no worker


def test_execution_settings_are_not_part_of_the_identity_and_precision_is():
    base = TrainSpec()
    same = TrainSpec(device="auto", channels_last=True, workers=4, pin_memory=False, gamma=0.5)
    assert same.id == base.id and same.model_dump()["workers"] == 4  # still travels to trials
    assert TrainSpec(precision="bf16").id != base.id
    assert TrainSpec(schedule="exponential", gamma=0.9).id != TrainSpec(schedule="exponential").id


def test_exponential_schedule_steps_once_per_epoch():
    spec = TrainSpec(lr=0.01, schedule="exponential", gamma=0.5)
    rates = [learning_rate(spec, i, total=40, per_epoch=10) for i in (0, 9, 10, 25)]
    assert rates == pytest.approx([0.01, 0.01, 0.005, 0.0025])


@pytest.fixture(scope="module")
def bf16_trunk():
    return train_trunk(tiny_trunk(precision="bf16", channels_last=True))


def test_a_bf16_trunk_really_ran_under_autocast_and_hands_back_numpy(bf16_trunk, trained_trunk):
    fp32 = trained_trunk  # tiny_trunk(), trained in fp32
    assert all(array.flags["C_CONTIGUOUS"] for array in bf16_trunk.final.values())
    assert any((bf16_trunk.final[k] != fp32.final[k]).any() for k in fp32.final)


# rigl moves masks during training; filter masks whole channels with their biases and norms
@pytest.mark.parametrize("pruning", [{}, {"method": "rigl", "update_interval": 2}, {"method": "filter", "scope": "layerwise"}])
def test_bf16_and_channels_last_keep_masks_exact_and_hand_back_contiguous_cpu_tensors(bf16_trunk, pruning):
    spec = tiny_lineage(rounds=2, train={"precision": "bf16", "channels_last": True}, **pruning)
    for result in run_lineage(spec, bf16_trunk):
        assert result.metrics["sparsity/masked"] == pytest.approx(result.metrics["sparsity/nominal"], abs=0.05)  # filter: by channels
        for name, mask in result.state.masks.items():
            for weights in (result.state.weights, result.evaluated):
                assert weights[name].device == CPU and weights[name].is_contiguous()
                assert (weights[name][~mask] == 0).all()  # exactly zero, not merely small
            assert mask.is_contiguous()


def test_channels_last_places_the_model_and_its_inputs():
    runtime = Runtime(channels_last=True)
    model = runtime.place(build_for(tiny_trunk(), cached_dataset(tiny_trunk().data)))
    conv = next(p for p in model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    images, _ = runtime.inputs(torch.randn(2, 3, 16, 16), torch.zeros(2, dtype=torch.long))
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert all(t.is_contiguous() for t in cpu_state(model).values())


@pytest.fixture(scope="module")
def lazy_split(tmp_path_factory):
    root = write_imagefolder(tmp_path_factory.mktemp("folder"), classes=3, per_class=5)
    dataset = load_dataset(DataSpec(name="imagefolder", path=str(root), image_size=16, train_size=15, test_size=6, in_memory=False))
    assert isinstance(dataset.train, LazySplit)
    return dataset


def test_prefetching_loader_yields_the_batches_of_direct_indexing(lazy_split):
    split = lazy_split.train
    plan = BatchPlan(len(split), batch_size=4, seed=3, iterations=range(2, 11))  # across epochs, from mid-epoch
    prefetched = list(Runtime(workers=2).batches(split, plan))
    assert len(prefetched) == len(plan)
    for (images, labels), pick in zip(prefetched, plan):
        expected_images, expected_labels = split.batch(pick)
        assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)


def test_training_with_loader_workers_is_bit_identical(lazy_split):
    spec = TrainSpec(epochs=2, batch_size=4, lr=0.01)
    states = []
    for workers in (0, 2):
        torch.manual_seed(0)
        model = build_model(ModelSpec(name="conv2", width=4), in_channels=3, image_size=16, num_classes=3)
        train(model, lazy_split.train, spec.model_copy(update={"workers": workers}), seed=0)
        states.append(cpu_state(model))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_a_device_split_indexes_like_the_split_it_copies():
    split = cached_dataset(tiny_trunk().data).train
    copy = DeviceSplit(split.images.clone(), split.labels.clone())
    for pick in (torch.tensor([5, 1, 9]), slice(10, 20)):
        assert all(torch.equal(a, b) for a, b in zip(copy.batch(pick), split.batch(pick)))
    assert on_device(split, CPU) is split  # on the CPU nothing is copied
