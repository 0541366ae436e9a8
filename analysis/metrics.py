"""One registry of what every metric means: the single place the measurements, the verdicts,
`lth tickets`, the summary and the plots read a metric's direction, reference, margin, figure
and saturation from.

A metric is compared either with the **dense** trunk's own value of it (accuracy, ECE, ...), or is
a **consistency** with the trunk (Grad-CAM rank correlation, concept Jaccard, ...), which the trunk
scores exactly 1 against itself by construction. Either way, "did the sparse network move?" is read
against the **noise floor**: how far a second dense network, differing only in its seed, moves
(`analysis/noise_floor.py`), which is descriptive. The margin below (how much worse than the
reference still counts as matching) is what the verdicts use, fixed before the data; `--margin
METRIC=VALUE` overrides it.

Patterns use fnmatch (`xai/gradcam_iou_top*` matches `xai/gradcam_iou_top10` whatever the
configured percentage); the first matching entry wins, so specific names come before wildcards.
Adding a metric: its measurement, and one `Metric(...)` line here.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from lth_sweep.trainables.record import TWIN_PREFIX

Reference = Literal["dense", "consistency"]


@dataclass(frozen=True)
class Metric:
    pattern: str
    higher_is_better: bool
    description: str
    margin: float  # how much worse than the reference still counts as matching, fixed before the data
    relative: bool = False  # margin as a fraction of |dense|
    reference: Reference = "dense"
    figure: str | None = None  # which per-dimension figure draws it (analysis/plots.py)
    bounds: tuple[float, float] | None = None  # the range it lives in: at a bound it is saturated
    collapse: float | None = None  # worse than dense by more than this is Chen et al.'s region III
    judged: bool = False  # among `lth tickets`' default metrics
    sampling_error_option: str | None = None  # the analysis option its sampling error needs, if any

    def matches(self, name: str) -> bool:
        return fnmatchcase(name, self.pattern)


UNIT = (0.0, 1.0)
FLATNESS_BOOTSTRAP = "analysis.flatness.bootstrap_draws"

REGISTRY: tuple[Metric, ...] = (
    # generalisation
    Metric("test/acc", True, "test accuracy", 0.005, figure="generalisation", bounds=UNIT, collapse=0.1, judged=True),
    Metric("test/loss", False, "test cross-entropy", 0.05, relative=True, figure="generalisation"),
    Metric("train/early_stop_iteration", False, "iteration of minimum validation loss (Frankle & Carbin)", 0.0,
           figure="generalisation"),
    Metric("train/early_stop_acc", True, "test accuracy at the iteration the validation split selects", 0.005,
           bounds=UNIT, collapse=0.1),
    Metric("train/early_stop_every", False, "iterations between the validation losses early stopping reads", 0.0),
    Metric("train/early_stop_saturated", False, "1 when the validation minimum is at the first or last evaluation", 0.0,
           bounds=UNIT),
    Metric("ood/auroc_heldout", True, "AUROC, test vs held-out-class images (max softmax)", 0.01, figure="ood",
           bounds=UNIT),
    Metric("ood/auroc_noise", True, "AUROC, test vs Gaussian-noise images (max softmax)", 0.01, figure="ood",
           bounds=UNIT, judged=True),
    Metric("corrupt/acc", True, "accuracy under common corruptions", 0.01, figure="robustness", bounds=UNIT,
           collapse=0.1, judged=True),
    Metric("corrupt/mce", False, "mean corruption error relative to the trunk", 0.05, relative=True,
           figure="robustness"),
    Metric("corrupt/error/*", False, "error under one corruption", 0.01, bounds=UNIT),
    Metric("adv/fgsm_acc", True, "accuracy under FGSM", 0.01, figure="robustness", bounds=UNIT, collapse=0.1,
           judged=True),
    Metric("adv/pgd_acc", True, "accuracy under PGD", 0.01, figure="robustness", bounds=UNIT, collapse=0.1),
    # calibration
    Metric("calib/ece", False, "expected calibration error", 0.01, figure="calibration", bounds=UNIT, judged=True),
    Metric("calib/sce", False, "static calibration error", 0.005, figure="calibration", bounds=UNIT),
    Metric("calib/nll", False, "negative log-likelihood", 0.05, relative=True, figure="calibration"),
    # geometry: scales depend on the network, so margins are relative
    Metric("flat/hessian_weights", False, "top Hessian eigenvalue in weight space", 0.1, relative=True, figure="geometry",
           sampling_error_option=FLATNESS_BOOTSTRAP),
    Metric("flat/hessian_inputs", False, "top Hessian eigenvalue in input space", 0.1, relative=True, figure="geometry"),
    Metric("flat/radius", True, "largest magnitude-aware noise keeping accuracy within 0.1 (Jiang et al. 2020)", 0.1,
           relative=True, figure="geometry", sampling_error_option=FLATNESS_BOOTSTRAP),
    # explanations: consistency with the trunk (the trunk scores 1 against itself)
    Metric("xai/gradcam_rank_corr", True, "Spearman correlation of Grad-CAM maps with the trunk's", 0.05,
           reference="consistency", figure="gradcam", bounds=(-1.0, 1.0), judged=True),
    Metric("xai/gradcam_iou_top*", True, "IoU of the top pixels of Grad-CAM maps with the trunk's", 0.05,
           reference="consistency", figure="gradcam", bounds=UNIT),
    Metric("xai/gradcam_cosine", True, "cosine similarity of Grad-CAM maps with the trunk's", 0.05,
           reference="consistency", bounds=UNIT),
    Metric("xai/concept_jaccard_top*", True, "Jaccard of each class's top PCBM concepts with the trunk's", 0.05,
           reference="consistency", figure="concepts", bounds=UNIT, judged=True),
    Metric("xai/concept_kendall_tau", True, "Kendall tau of PCBM concept weights with the trunk's", 0.05,
           reference="consistency", figure="concepts", bounds=(-1.0, 1.0)),
    # explanations: quality of the network's own explanation, compared with the trunk's
    Metric("xai/gradcam_energy_in_object", True, "share of Grad-CAM energy on the object", 0.02, figure="gradcam",
           bounds=UNIT, judged=True),
    Metric("xai/gradcam_pointing_game", True, "share of maps whose peak is on the object", 0.02, figure="gradcam",
           bounds=UNIT),
    Metric("xai/concept_recovery", True, "share of classes whose top concepts are the defining ones", 0.1,
           figure="concepts", bounds=UNIT, judged=True),
    Metric("xai/concept_recovery_margin", True, "how clearly each class's defining concepts lead its PCBM weights (-2..1)",
           0.05, figure="concepts", bounds=(-2.0, 1.0)),
    Metric("xai/concept_pcbm_acc", True, "accuracy of the post-hoc concept bottleneck", 0.01, figure="concepts",
           bounds=UNIT),
    Metric("xai/concept_cav_acc", True, "balanced accuracy of the concept vectors", 0.01, bounds=UNIT),
    Metric("xai/lime_fidelity", False, "squared error of LIME's surrogate", 0.2, relative=True, figure="lime_and_mis"),
    Metric("xai/lime_stability", False, "change of LIME explanations under noise", 0.2, relative=True,
           figure="lime_and_mis"),
    Metric("xai/mis", True, "mechanistic interpretability score", 0.02, figure="lime_and_mis", bounds=UNIT),
)

# Prefixes of the columns that describe a metric rather than being one (`dense/test/acc`, `se/...`).
DENSE_PREFIX = "dense/"  #: the trunk's value, in the tidy frame (analysis/query.py)
SE_PREFIX = "se/"  #: the sampling error of one network's value
SE_DIFF_PREFIX = "se_diff/"  #: the paired sampling error of a round's difference from its trunk
FLOOR_PREFIX = "floor/"  #: on a trunk: another seed's trunk measured against it
NONFINITE_PREFIX = "nonfinite/"  #: 1 where a round logged a NaN or infinite value (analysis/query.py)
DERIVED_PREFIXES = (DENSE_PREFIX, SE_PREFIX, SE_DIFF_PREFIX, FLOOR_PREFIX, TWIN_PREFIX, NONFINITE_PREFIX)

#: one figure each (analysis/plots.py), a few panels apiece so each stays readable at the UI's preview size
FIGURES = ("generalisation", "robustness", "ood", "calibration", "geometry", "gradcam", "concepts", "lime_and_mis")


class UnknownMetric(KeyError):
    pass


def lookup(name: str) -> Metric:
    """The registry entry of `name` (per-class keys `.../class/<name>` take their metric's entry)."""
    base = name.split("/class/")[0]
    for metric in REGISTRY:
        if metric.matches(base):
            return metric
    raise UnknownMetric(f"no metric {name!r} in the registry (analysis/metrics.py)")


def known(name: str) -> bool:
    try:
        lookup(name)
        return True
    except UnknownMetric:
        return False


def higher_is_better(name: str) -> bool:
    return lookup(name).higher_is_better


def is_consistency(name: str) -> bool:
    return known(name) and lookup(name).reference == "consistency"


def judged_by_default() -> tuple[str, ...]:
    return tuple(m.pattern for m in REGISTRY if m.judged)


def in_figure(figure: str, columns) -> list[str]:
    """The columns of a sweep's table that `figure` draws, in registry order."""
    names = [c for c in columns if "/class/" not in c and not c.startswith(DERIVED_PREFIXES)]
    out = []
    for metric in REGISTRY:
        if metric.figure == figure:
            out += sorted(c for c in names if metric.matches(c) and c not in out)
    return out


def saturated(name: str, values) -> bool:
    """Every value sits at the metric's better bound (accuracy 1.0 for every network): the measure
    cannot separate anything and no verdict is drawn from it."""
    metric = lookup(name)
    values = [float(v) for v in values if v == v]
    if metric.bounds is None or not values:
        return False
    best = metric.bounds[1] if metric.higher_is_better else metric.bounds[0]
    return all(abs(v - best) <= 1e-9 for v in values)
