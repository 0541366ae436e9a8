"""Calibration: how well the network's confidence matches its accuracy on the whole test split
(ECE, static calibration error, NLL), and the test accuracy's sampling error."""
from __future__ import annotations

from pydantic import Field

from lth_sweep.analysis.dimension import Cost, Dimension, Network, Reference
from lth_sweep.analysis.metric import UNIT, Metric
from lth_sweep.trainables.canonical import Spec


class CalibrationSpec(Spec):
    enabled: bool = True
    bins: int = Field(15, ge=2)


def measure(net: Network, dense: Reference | None, metrics: dict) -> dict:
    from lth_sweep.analysis import calibration, robustness
    from lth_sweep.analysis.measure_tools import probabilities, sample, trunk_units

    test = sample(net.dataset.test, len(net.dataset.test), net.spec.seed, "test")  # all of it, for file-backed too
    probs, labels = probabilities(net.model, test.images), test.labels
    bins = net.spec.calibration.bins
    metrics["calib/ece"] = float(calibration.ece(probs, labels, bins=bins))
    metrics["calib/sce"] = float(calibration.sce(probs, labels, bins=bins))
    metrics["calib/nll"] = float(calibration.nll(probs, labels))
    # Sampling errors for the verdicts (analysis/sampling_error.py): binomial for the accuracy on
    # this split, a seeded bootstrap over images for the binned errors (no closed form).
    accuracy = float((probs.argmax(1) == labels).float().mean())
    metrics["se/test/acc"] = robustness.binomial_se(accuracy, len(labels))
    metrics |= calibration.sampling_errors(probs, labels, trunk_units(dense, "test/probs", len(labels)), bins, net.spec.seed)
    return {"per_unit": {"test/probs": probs}}


def work(options: CalibrationSpec, data, ood: int) -> tuple[float, int]:
    return data.test, data.test


DIMENSION = Dimension(
    name="calibration",
    options=CalibrationSpec,
    measure=measure,
    metrics=(
        Metric("calib/ece", False, "expected calibration error", 0.01, figure="calibration", bounds=UNIT, judged=True),
        Metric("calib/sce", False, "static calibration error", 0.005, figure="calibration", bounds=UNIT),
        Metric("calib/nll", False, "negative log-likelihood", 0.05, relative=True, figure="calibration"),
    ),
    figures=("calibration",),
    cost=Cost(51e9, 4e-5, 0.0, work),
)
