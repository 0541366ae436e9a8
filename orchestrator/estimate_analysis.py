"""The analysis side of the dry-run estimate: what one measurement of a network costs on an
analysis actor (CPU threads or a share of a GPU), and the sweep's measurements on its actors.

A measurement (a round of a lineage, or a trunk's dense reference and noise floor) costs, per
dimension, forward-pass equivalents on its samples (a backward to the inputs only counts 1, one
to the weights 2, a Hessian-vector product 4) at the device's rate, plus CPU work per sampled
image that no device speeds up (scikit-learn fits, SLIC superpixels, ranks, bootstraps).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lth_sweep.analysis.dimensions import DIMENSIONS
from lth_sweep.trainables.data.describe import describe
from lth_sweep.trainables.specs import TrunkSpec

# Each dimension's rates (`analysis/dimensions/<name>.py`, `cost`) are calibrated on this machine
# (2-core x86_64, AVX2, 1 thread as an actor with cpus_per_actor <= 1; torch 2.14, CPU) from one
# round measured per dimension, of the quickstart's Conv-4 (16 px, 1.6M MACs) under the
# quickstart's and the default analysis samples and of a ResNet-20 (32 px, 40.8M MACs) under the
# quickstart's: per dimension, the three fit (non-negative least squares on relative errors)
# seconds = 2 x MACs x passes / rate + seconds per sampled image x images + fixed seconds. Repeated
# runs here vary by 20-40% (a shared machine): rough.
#   OMP_NUM_THREADS=1 python bench/analysis_cost.py [--set ...]   (figures: bench/RESULTS.md, "Analysis cost model")
# The rate absorbs how far each dimension's pass count is off (e.g. Grad-CAM's backward stops early).
#: One GPU on the analysis' small batches: launch-bound, far below GPU_FLOPS. Assumed, not
#: measured (no GPU here); the per-image and fixed CPU seconds are kept on a GPU.
ANALYSIS_GPU_FLOPS = 5e12


@dataclass(frozen=True)
class AnalysisCost:
    """One measurement (a round of a lineage, or a trunk's reference), per enabled dimension:
    forward-pass equivalents over its samples, and the images it samples (for its CPU work)."""

    passes: dict[str, float]
    images: dict[str, int]

    def seconds(self, macs: int | None, threads: int = 1, gpu_share: float = 0.0) -> float:
        """On one actor: `threads` CPU threads, or `gpu_share` of a GPU when > 0."""
        total = 0.0
        for name, passes in self.passes.items():
            cost = DIMENSIONS[name].cost
            rate = ANALYSIS_GPU_FLOPS * gpu_share if gpu_share > 0 else cost.flops_per_thread * threads
            compute = 0.0 if macs is None else 2.0 * macs * passes / rate
            total += compute + cost.seconds_per_image * self.images[name] + cost.seconds_fixed
        return total


def analysis_cost(analysis, data_spec) -> AnalysisCost:
    """What one measurement of a network on `data_spec`'s data costs under the `analysis` spec.
    Every enabled dimension counts, also where the model or data cannot take it (Grad-CAM and MIS
    need a conv model, concepts annotated concepts): an upper bound."""
    data = describe(data_spec)
    ood = int(getattr(data_spec, "ood_size", 0) or 0)
    passes: dict[str, float] = {}
    images: dict[str, int] = {}
    for name, dimension in DIMENSIONS.items():
        options = getattr(analysis, name)
        if options.enabled:
            passes[name], images[name] = dimension.cost.work(options, data, ood)
    return AnalysisCost(passes, images)


@dataclass(frozen=True)
class AnalysisPlan:
    """The analysis side of the wall-time estimate: seconds of every measurement, on `actors`."""

    actors: int
    device: str  # "CPU (1 thread)" or "GPU (0.5 each)"
    seconds: list[float]  # per lineage (all its rounds) and per trunk (reference and noise floor)
    per_round: float  # a round of the costliest lineage


def analysis_plan(analysis, measurements: list[tuple[TrunkSpec, int]], forward_macs: Callable) -> AnalysisPlan | None:
    """`measurements`: (the trunk whose network is measured, how many times) for each lineage (its
    rounds) and trunk (its reference and noise floor); `forward_macs(model spec, description)`
    counts a network's multiply-accumulates. None when the analysis is off."""
    if not analysis.enabled or not measurements:
        return None
    threads, share = max(1, int(analysis.cpus_per_actor)), analysis.gpus_per_actor
    device = f"GPU ({share:g} each)" if share > 0 else f"CPU ({threads} thread{'s' if threads > 1 else ''})"
    per_network = {}
    for spec, _ in measurements:
        if (spec.model, spec.data) not in per_network:
            macs = forward_macs(spec.model, describe(spec.data))
            per_network[spec.model, spec.data] = analysis_cost(analysis, spec.data).seconds(macs, threads, share)
    seconds = [per_network[spec.model, spec.data] * count for spec, count in measurements]
    return AnalysisPlan(analysis.actors, device, seconds, max(per_network.values()))
