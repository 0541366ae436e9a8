"""What an analysis dimension declares, in its own module of `analysis/dimensions/`: its options,
its measurement, the metrics it writes and its cost. Everything else is derived from these
declarations: the `analysis` section of a config (`analysis_spec.py`), the measuring loop
(`measure.py`), the metric registry and its figures (`metrics.py`), and the dry run's cost
model (`orchestrator/estimate_analysis.py`).

The metric registry is read by `lth query` and by `lth export`'s early errors, which do not load
torch. So a dimension module imports torch, and the code that measures, inside its `measure`
function (the shared tools are in `measure_tools.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from lth_sweep.analysis.metric import Metric
from lth_sweep.trainables.canonical import Spec

if TYPE_CHECKING:
    from lth_sweep.trainables.data import Dataset
    from lth_sweep.trainables.data.describe import Description
    from lth_sweep.trainables.masks import Masks
    from lth_sweep.trainables.models import PrunableModel


@dataclass
class Reference:
    """The dense trunk's side of every comparison, computed once per trunk."""

    values: dict[str, float] = field(default_factory=dict)  # the trunk's own metric values
    gradcam: object | None = None  # maps of the Grad-CAM sample (a tensor)
    pcbm: object | None = None  # its post-hoc concept bottleneck
    corruption_errors: dict | None = None
    grid: bytes | None = None  # its Grad-CAM grid (PNG): step 0 of every lineage's image series
    # Metric -> the trunk's value per sampling unit (image, class, MIS unit) or the per-image
    # inputs of the metric (probabilities, confidences): what `se_diff/<metric>` pairs a round's
    # with. Vectors of the analysis samples' sizes (the test probabilities are N x C floats), or
    # for the flatness statistics that are no mean over images, their bootstrap replicates.
    per_unit: dict[str, object] = field(default_factory=dict)


@dataclass
class Network:
    """What a measurement needs: the model in eval mode, its masks, the data and the spec."""

    model: PrunableModel
    masks: Masks
    dataset: Dataset
    spec: Spec  # the whole analysis spec (`analysis_spec.AnalysisSpec`): `spec.<dimension>` is one's options
    label: str  # "dense" or "round_03": names the artifacts
    artifacts: Path  # a folder; files written here are logged under the same relative path
    cache: dict = field(default_factory=dict)  # per-actor cache of what depends on the data only
    data_id: str = ""  # the data spec's id: the cache's key for this dataset


#: (network, the dense trunk's Reference or None when measuring the trunk itself, the metrics to
#: write into) -> this network's part of its own Reference, as Reference field -> value (the
#: per-unit quantities under "per_unit").
Measure = Callable[[Network, "Reference | None", dict], dict]


@dataclass(frozen=True)
class Cost:
    """One measurement's cost on an analysis actor, for the dry run: `work(options, data, ood
    images)` gives (forward-pass equivalents over its samples, images sampled); the rates are
    calibrated on this machine by `bench/analysis_cost.py` (`bench/RESULTS.md`, "Analysis cost
    model"): FLOP/s per CPU thread, and the CPU seconds per sampled image and per measurement that
    no device speeds up (scikit-learn fits, SLIC, bootstraps, plots)."""

    flops_per_thread: float
    seconds_per_image: float
    seconds_fixed: float
    work: Callable[[Spec, "Description", int], tuple[float, int]]


@dataclass(frozen=True)
class Dimension:
    name: str  #: the key of its options in the `analysis` section, and of `analysis/seconds/<name>`
    options: type[Spec]  #: its options, with an `enabled` field
    measure: Measure
    metrics: tuple[Metric, ...]  #: its rows of the metric registry, in the order reports list them
    figures: tuple[str, ...]  #: the figures (analysis/plots.py) its metrics are drawn in, in order
    cost: Cost
    #: A dimension added after sweeps' ids were in use: its options are left out of the analysis
    #: spec's identity while it is off, so those ids still hold (`trainables/identity.py`).
    omitted_while_off: bool = False
