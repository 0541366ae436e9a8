"""LIME: how faithful a local linear surrogate of the network is (its squared error) and how much
its explanations change under noise, on a few test images (Ribeiro et al.)."""
from __future__ import annotations

from pydantic import Field

from lth_sweep.analysis.dimension import Cost, Dimension, Network, Reference
from lth_sweep.analysis.metric import Metric
from lth_sweep.trainables.canonical import Spec


class LimeSpec(Spec):
    enabled: bool = True
    images: int = Field(8, ge=1)
    samples: int = Field(64, ge=8, description="perturbations per image")


def measure(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis import sampling_error
    from lth_sweep.analysis.lime import lime_per_image
    from lth_sweep.analysis.measure_tools import paired_se, put, sample

    spec = net.spec.lime
    test = sample(net.dataset.test, spec.images, net.spec.seed, "lime")
    per_image = lime_per_image(
        net.model, test.images, test.labels, samples=spec.samples, held_out=spec.samples, images_limit=spec.images,
        seed=net.spec.seed,
    )
    units = {f"xai/{key}": values for key, values in per_image.items()}
    for key, values in units.items():
        metrics[key] = float(values.mean()) if len(values) else float("nan")
        put(metrics, f"se/{key}", sampling_error.mean_se(values))
        paired_se(metrics, dense, key, values)
    return {"per_unit": units}



def work(options: LimeSpec, data, ood: int) -> tuple[float, int]:
    n = min(options.images, data.test)
    return n * 3 * options.samples, n  # two surrogate fits and the held-out samples


DIMENSION = Dimension(
    name="lime",
    options=LimeSpec,
    measure=measure,
    metrics=(
        Metric("xai/lime_fidelity", False, "squared error of LIME's surrogate", 0.2, relative=True, figure="lime_and_mis"),
        Metric("xai/lime_stability", False, "change of LIME explanations under noise", 0.2, relative=True,
               figure="lime_and_mis"),
    ),
    figures=("lime_and_mis",),
    cost=Cost(62e9, 2.9e-2, 0.0, work),  # per image: SLIC and two ridge fits
)
