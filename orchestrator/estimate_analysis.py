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

from lth_sweep.trainables.data.describe import describe
from lth_sweep.trainables.specs import TrunkSpec

# The analysis, calibrated on this machine (2-core x86_64, AVX2, 1 thread as an actor with
# cpus_per_actor <= 1; torch 2.14, CPU) from one round measured per dimension, of the quickstart's
# Conv-4 (16 px, 1.6M MACs) under the quickstart's and the default analysis samples and of a
# ResNet-20 (32 px, 40.8M MACs) under the quickstart's: per dimension, the three fit (non-negative
# least squares on relative errors) seconds = 2 x MACs x passes / rate + seconds per sampled image
# x images + fixed seconds. Repeated runs here vary by 20-40% (a shared machine): rough.
#   OMP_NUM_THREADS=1 python bench/analysis_cost.py [--set ...]   (figures: bench/RESULTS.md, "Analysis cost model")
# The rate absorbs how far the pass counts below are off (e.g. Grad-CAM's backward stops early);
# per image and fixed: CPU work no device speeds up (bootstraps, scikit-learn fits, SLIC, plots).
#: dimension -> (FLOP/s per CPU thread, CPU seconds per sampled image, CPU seconds per measurement)
ANALYSIS_CPU: dict[str, tuple[float, float, float]] = {
    "calibration": (51e9, 4e-5, 0.0),
    "robustness": (67e9, 0.0, 0.07),
    "flatness": (46e9, 0.0, 0.09),
    "gradcam": (82e9, 0.0, 0.2),  # fixed: the overlay grid (matplotlib)
    "concepts": (48e9, 1.3e-4, 0.0),  # per image: the concept SVMs and the PCBM (scikit-learn)
    "lime": (62e9, 2.9e-2, 0.0),  # per image: SLIC and two ridge fits
    "mis": (57e9, 9e-5, 0.0),
}
#: One GPU on the analysis' small batches: launch-bound, far below GPU_FLOPS. Assumed, not
#: measured (no GPU here); the per-image and fixed CPU seconds above are kept on a GPU.
ANALYSIS_GPU_FLOPS = 5e12
HVP_PASSES = 4  # a Hessian-vector product (double backward), in forward passes



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
            cpu_rate, per_image, fixed = ANALYSIS_CPU[name]
            rate = ANALYSIS_GPU_FLOPS * gpu_share if gpu_share > 0 else cpu_rate * threads
            total += (0.0 if macs is None else 2.0 * macs * passes / rate) + per_image * self.images[name] + fixed
        return total


def analysis_cost(analysis, data_spec) -> AnalysisCost:
    """What one measurement of a network on `data_spec`'s data costs under the `analysis` spec.
    Every enabled dimension counts, also where the model or data cannot take it (Grad-CAM and MIS
    need a conv model, concepts annotated concepts): an upper bound."""
    data = describe(data_spec)
    test, ood = data.test, int(getattr(data_spec, "ood_size", 0) or 0)
    passes: dict[str, float] = {}
    images: dict[str, int] = {}
    if analysis.calibration.enabled:
        images["calibration"] = test
        passes["calibration"] = test
    if analysis.robustness.enabled:
        spec = analysis.robustness
        n = min(spec.images, test)
        corruptions = (_all_corruptions() if spec.corruptions == ("all",) else len(spec.corruptions)) * len(spec.severities)
        # an input gradient's backward ~ a forward (no weight gradients): FGSM 3, PGD 2 a step + 2
        attacks = (3 + (2 * spec.pgd_steps + 2 if spec.pgd_steps else 0)) if spec.fgsm_eps > 0 else 0
        images["robustness"] = n
        passes["robustness"] = n * (1 + spec.ood_noise + attacks + corruptions) + min(spec.images, ood)
    if analysis.flatness.enabled:
        spec = analysis.flatness
        n = min(spec.images, test)
        hessian = 3 + spec.iterations * HVP_PASSES  # a gradient kept for a double backward, then products
        radius = 1 + spec.noise_draws * (spec.bisections + 1)
        images["flatness"] = n
        # weights and inputs; the bootstrap recomputes the weights' Hessian and the radius per draw
        passes["flatness"] = n * (2 * hessian + radius + spec.bootstrap_draws * (hessian + radius))
    if analysis.gradcam.enabled:
        n = min(analysis.gradcam.images, test)
        images["gradcam"] = n
        passes["gradcam"] = 2 * n + min(analysis.gradcam.grid_images, n)  # the backward stops at the Grad-CAM layer
    if analysis.concepts.enabled:
        spec = analysis.concepts
        n = min(spec.train_images, data.train) + min(spec.eval_images, test)
        images["concepts"] = n
        passes["concepts"] = n
    if analysis.lime.enabled:
        n = min(analysis.lime.images, test)
        images["lime"] = n
        passes["lime"] = n * 3 * analysis.lime.samples  # two surrogate fits and the held-out samples
    if analysis.mis.enabled:
        n = min(analysis.mis.images, test)
        images["mis"] = n
        passes["mis"] = n
    return AnalysisCost(passes, images)


def _all_corruptions() -> int:
    from lth_sweep.analysis.corruptions import CORRUPTIONS

    return len(CORRUPTIONS)


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
