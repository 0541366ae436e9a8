"""Where the analysis measures (analysis/device.py), as far as a machine without a GPU can tell:
the actor's device rule, every dimension running with an explicit device, results back on the CPU,
the device-safe pixel transforms equal to the dataset's, and `analysis.gpus_per_actor` validated.
The same under Ray, with a logical GPU: tests/sweep/test_analysis_on_gpu_logical.py."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lth_sweep.analysis import flatness, gradcam, robustness
from lth_sweep.analysis.actors import Analyzer, pool_shortfall
from lth_sweep.analysis.analysis_spec import AnalysisSpec
from lth_sweep.analysis.device import analysis_device, model_device
from lth_sweep.analysis.dimensions import DIMENSIONS
from lth_sweep.analysis.measure import measure
from lth_sweep.analysis.measure_tools import sample
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.config_errors import ConfigError
from lth_sweep.trainables.trunk import cached_dataset

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: tests/unit/conftest.py

#: Every dimension on, on small samples of the tiny trunk's data (16 px shapes, 128 test images).
EVERY_DIMENSION = {
    "gradcam": {"images": 32, "grid_images": 2},
    "concepts": {"train_images": 200, "eval_images": 60},
    "lime": {"images": 2, "samples": 16},
    "mis": {"images": 60, "units": 2},
    "robustness": {"images": 32, "pgd_steps": 2, "corruptions": ["gaussian_noise", "shot_noise", "impulse_noise", "jpeg_compression"], "severities": [1, 5]},
    "flatness": {"images": 16, "iterations": 2, "bisections": 2, "noise_draws": 1},
}


@pytest.mark.parametrize(
    "ray_gpus,cuda,expected",
    [
        ([], False, "cpu"),  # an actor that asked for no GPU
        ([], True, "cpu"),  # ... on a GPU node: Ray no longer hides the GPUs, the actor still stays off them
        (["0"], True, "cuda"),  # Ray assigned a GPU (a whole one or a share) and torch sees it
        (["0"], False, "cpu"),  # assigned, but torch sees no CUDA (logical GPUs, a driver problem): the CPU
        (None, False, "cpu"),  # outside Ray (an in-process analyzer)
        (None, True, "cuda"),
    ],
)
def test_the_actor_measures_where_training_would_train(ray_gpus, cuda, expected):
    assert analysis_device(cuda, ray_gpus) == torch.device(expected)


def test_the_datasets_pixel_transforms_stay_on_the_inputs_device_and_dtype(trained_trunk):
    """Attacks and corruptions run on the actor's device through `to_pixels`/`from_pixels`: their
    constants must meet the images there (meta stands in for a GPU: a CPU constant would raise)."""
    data = cached_dataset(trained_trunk.spec.data)
    images = data.test.images[:16]
    on_meta = data.to_pixels(images.to("meta"))
    assert on_meta.device.type == "meta" and data.from_pixels(on_meta).device.type == "meta"
    double = data.to_pixels(images.double())
    assert double.dtype == torch.float64 and torch.allclose(double.float(), data.to_pixels(images))
    assert torch.allclose(data.from_pixels(data.to_pixels(images)), images, atol=1e-6)


def test_the_network_is_placed_on_the_analyzers_device(trained_trunk):
    masks = _half_masks(trained_trunk.final)
    assert masks
    net = Analyzer(EVERY_DIMENSION, device=torch.device("cpu"))._network(trained_trunk.spec, trained_trunk.final, masks, "x", _folder())
    assert model_device(net.model) == torch.device("cpu")
    assert all(mask.device == torch.device("cpu") and mask.dtype == torch.bool for mask in net.masks.values())
    assert Analyzer(EVERY_DIMENSION, device="cpu").device == torch.device("cpu")


def test_an_explicit_cpu_device_measures_every_dimension_as_the_default_does(trained_trunk):
    """Every dimension, on the dense trunk and on a masked round, with device=cpu given explicitly:
    the same metrics, bit for bit, as the analyzer's default; every value a plain Python number and the
    Reference's tensors on the CPU."""
    spec, trunk = AnalysisSpec.model_validate(EVERY_DIMENSION), trained_trunk.spec
    masks = _half_masks(trained_trunk.final)
    weights = {name: array * masks[name] if name in masks else array for name, array in trained_trunk.final.items()}
    results = []
    for analyzer in (Analyzer(spec), Analyzer(spec, device=torch.device("cpu"))):
        dense, reference, _ = analyzer.reference(trunk, trained_trunk.final)
        net = analyzer._network(trunk, weights, masks, "round_01", _folder())
        rounds, _ = measure(net, reference)
        results.append((_measured(dense), _measured(rounds)))
        assert all(type(value) in (float, int) for value in rounds.values())  # plain Python numbers, no tensors
        assert reference.gradcam.device == torch.device("cpu")
        assert {key.split("/")[-1] for key in rounds if key.startswith("analysis/seconds/")} == set(DIMENSIONS)
    np.testing.assert_equal(results[0], results[1])  # bit for bit; NaN (a collapsed network's radius) equals NaN
    dense, rounds = results[0]
    assert {"xai/gradcam_rank_corr", "xai/concept_jaccard_top3", "adv/pgd_acc", "corrupt/mce", "flat/hessian_weights",
            "xai/lime_fidelity", "xai/mis", "calib/ece"} <= set(rounds)
    assert all(math.isfinite(value) for key, value in rounds.items() if key != "flat/radius")


def test_dimension_functions_return_cpu_results_and_leave_the_model_where_it_was(trained_trunk):
    net = Analyzer(EVERY_DIMENSION)._network(trained_trunk.spec, trained_trunk.final, {}, "dense", _folder())
    test = sample(net.dataset.test, 16, 0, "gradcam")
    maps = gradcam.gradcam_maps(net.model, test.images, test.labels)
    assert maps.device == torch.device("cpu") and maps.shape == (16, 16, 16)
    logits = robustness.predict_logits(net.model, test.images)
    assert logits.device == torch.device("cpu")
    value = flatness.hessian_top_eigenvalue(net.model, test.images, test.labels, iterations=2, seed=1)
    again = flatness.hessian_top_eigenvalue(net.model, test.images, test.labels, iterations=2, seed=1)
    assert type(value) is float and value == again  # the probe is drawn from a seeded CPU generator
    assert model_device(net.model) == torch.device("cpu")


@pytest.mark.parametrize(
    "value,message",
    [
        ("-0.5", "analysis.gpus_per_actor: Input should be greater than or equal to 0"),
        ("two", "analysis.gpus_per_actor: Input should be a valid number"),
        ("true", "analysis.gpus_per_actor: true is a yes/no value"),
        ("1.5", "analysis.gpus_per_actor: 1.5 GPUs per actor, but an actor measures on one device: at most 1"),
        ("inf", "analysis.gpus_per_actor: inf GPUs per actor, but an actor measures on one device"),
    ],
)
def test_a_bad_gpus_per_actor_is_named_with_the_reason(value, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, [f"analysis.gpus_per_actor={value}"])
    assert message in str(error.value)


def test_gpus_per_actor_takes_fractions_and_leaves_the_sweeps_identity_alone():
    plain = load_config(None)
    shared = load_config(None, ["analysis.gpus_per_actor=0.25"])
    assert shared.analysis.gpus_per_actor == 0.25 and plain.analysis.gpus_per_actor == 0
    assert shared.analysis.id == plain.analysis.id  # where it is measured, not what


def test_an_actor_that_no_cluster_could_hold_is_named():
    spec = AnalysisSpec(gpus_per_actor=0.5)
    problem = pool_shortfall(spec, {"CPU": 16.0})
    assert problem.startswith("analysis.gpus_per_actor: 0.5 GPUs per analysis actor, but the Ray cluster has 0;")
    assert pool_shortfall(spec, {"CPU": 16.0, "GPU": 1.0}) is None
    assert pool_shortfall(AnalysisSpec(cpus_per_actor=4), {"CPU": 2.0}).startswith("analysis.cpus_per_actor: 4 CPUs")
    assert pool_shortfall(AnalysisSpec(), {}) is None  # the default asks for nothing


def _half_masks(final: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Half of each conv and linear weight kept, at random (seeded)."""
    generator = torch.Generator().manual_seed(0)
    return {
        name: (torch.rand(array.shape, generator=generator) > 0.5).numpy()
        for name, array in final.items() if name.endswith("weight") and array.ndim > 1
    }


def _measured(metrics: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if not key.startswith("analysis/seconds")}


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="lth-test-"))
