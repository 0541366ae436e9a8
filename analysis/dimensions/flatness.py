"""Flatness: the top Hessian eigenvalue in weight space and in input space, and the largest
magnitude-aware noise that keeps accuracy (Jiang et al. 2020's flatness radius)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator

from lth_sweep.analysis.dimension import Cost, Dimension, Network, Reference
from lth_sweep.analysis.metric import Metric
from lth_sweep.trainables.canonical import Spec

if TYPE_CHECKING:
    import torch
from lth_sweep.trainables.identity import OmittedWhen

ADDED_LATER = "added after ids were in use: part of the identity only where it adds measurements"
BOOTSTRAP_OPTION = "analysis.flatness.bootstrap_draws"
HVP_PASSES = 4  # a Hessian-vector product (double backward), in forward passes


class FlatnessSpec(Spec):
    enabled: bool = True
    images: int = Field(128, ge=8)
    iterations: int = Field(8, ge=1, description="power-iteration steps for the top Hessian eigenvalues")
    noise_draws: int = Field(2, ge=1, description="noise draws per scale for the flatness radius")
    bisections: int = Field(6, ge=1, description="bisection steps of the flatness radius")
    bootstrap_draws: Annotated[int, OmittedWhen(lambda flatness: not flatness.bootstrap_draws, ADDED_LATER)] = Field(
        0, ge=0, description="bootstrap resamples of the images for the sampling errors of flat/hessian_weights and "
        "flat/radius (each recomputes both: ~draws x their cost); 0: none (their verdicts rest on the seeds alone)",
    )

    @field_validator("bootstrap_draws")
    @classmethod
    def _enough_draws(cls, draws: int) -> int:
        if draws == 1:
            raise ValueError("one bootstrap draw has no spread: 0 (off) or at least 2 (e.g. 50)")
        return draws


def measure(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis import flatness, sampling_error
    from lth_sweep.analysis.measure_tools import paired_se, put, sample, trunk_units

    spec = net.spec.flatness
    test = sample(net.dataset.test, spec.images, net.spec.seed, "flatness")
    batch = (net.model, test.images, test.labels, net.masks)
    whole_sample = {
        "flat/hessian_weights": lambda weights=None: flatness.hessian_top_eigenvalue(
            *batch, iterations=spec.iterations, seed=net.spec.seed, weights=weights),
        "flat/radius": lambda weights=None: flatness.flatness_radius(
            *batch, draws=spec.noise_draws, bisections=spec.bisections, seed=net.spec.seed, weights=weights),
    }
    # The radius is known to one bisection step: a rounding error (variance step^2 / 12 per value)
    # that resamples landing in one step would otherwise hide.
    resolution = {"flat/radius": flatness.radius_resolution(spec.bisections), "flat/hessian_weights": 0.0}
    units = {}
    for key, statistic in whole_sample.items():
        metrics[key] = float(statistic())
        if spec.bootstrap_draws:
            units[key] = bootstrap_replicates(statistic, len(test.labels), net.spec.seed, key, spec.bootstrap_draws)
            rounding = resolution[key] ** 2 / 12
            put(metrics, f"se/{key}", math.sqrt(sampling_error.spread(units[key]) ** 2 + rounding))
            trunk = trunk_units(dense, key, spec.bootstrap_draws)
            if trunk is not None:
                put(metrics, f"se_diff/{key}", math.sqrt(sampling_error.spread(units[key] - trunk) ** 2 + 2 * rounding))
    per_image = flatness.input_hessian_eigenvalues(*batch, iterations=spec.iterations, seed=net.spec.seed)
    metrics["flat/hessian_inputs"] = float(per_image.mean())
    put(metrics, "se/flat/hessian_inputs", sampling_error.mean_se(per_image))
    paired_se(metrics, dense, "flat/hessian_inputs", per_image)
    return {"per_unit": units | {"flat/hessian_inputs": per_image}}


def bootstrap_replicates(statistic, n: int, seed: int, key: str, draws: int) -> torch.Tensor:
    """The statistic recomputed on `draws` seeded resamples of the images (as per-image weights).
    The weight-space eigenvalue and the radius are no mean over images, so each draw reruns the
    power iteration or the bisection. The trunk draws the same resamples (same seed and key):
    their replicate-by-replicate difference gives the paired error."""
    import torch

    from lth_sweep.analysis import sampling_error

    counts = sampling_error.resample_counts(n, sampling_error.bootstrap_seed(seed, key), draws)
    return torch.tensor([float(statistic(weights)) for weights in counts], dtype=torch.float64)



def work(options: FlatnessSpec, data, ood: int) -> tuple[float, int]:
    n = min(options.images, data.test)
    hessian = 3 + options.iterations * HVP_PASSES  # a gradient kept for a double backward, then products
    radius = 1 + options.noise_draws * (options.bisections + 1)
    # weights and inputs; the bootstrap recomputes the weights' Hessian and the radius per draw
    return n * (2 * hessian + radius + options.bootstrap_draws * (hessian + radius)), n


DIMENSION = Dimension(
    name="flatness",
    options=FlatnessSpec,
    measure=measure,
    metrics=(  # scales depend on the network, so margins are relative
        Metric("flat/hessian_weights", False, "top Hessian eigenvalue in weight space", 0.1, relative=True, figure="geometry",
               sampling_error_option=BOOTSTRAP_OPTION),
        Metric("flat/hessian_inputs", False, "top Hessian eigenvalue in input space", 0.1, relative=True, figure="geometry"),
        Metric("flat/radius", True, "largest magnitude-aware noise keeping accuracy within 0.1 (Jiang et al. 2020)", 0.1,
               relative=True, figure="geometry", sampling_error_option=BOOTSTRAP_OPTION),
    ),
    figures=("geometry",),
    cost=Cost(46e9, 0.0, 0.09, work),
)
