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
The rows are training's (below) and each dimension's (`analysis/dimensions/<name>.py`, `metrics`),
in that order. Adding a metric: its measurement, and one `Metric(...)` line beside it.
"""
from __future__ import annotations

from lth_sweep.analysis.dimensions import DIMENSIONS
from lth_sweep.analysis.metric import UNIT, Metric
from lth_sweep.trainables.record import TWIN_PREFIX

#: What training measures (`trainables/`), before every dimension's own rows.
TRAINING: tuple[Metric, ...] = (
    Metric("test/acc", True, "test accuracy", 0.005, figure="generalisation", bounds=UNIT, collapse=0.1, judged=True),
    Metric("test/loss", False, "test cross-entropy", 0.05, relative=True, figure="generalisation"),
    Metric("train/early_stop_iteration", False, "iteration of minimum validation loss (Frankle & Carbin)", 0.0,
           figure="generalisation"),
    Metric("train/early_stop_acc", True, "test accuracy at the iteration the validation split selects", 0.005,
           bounds=UNIT, collapse=0.1),
    Metric("train/early_stop_every", False, "iterations between the validation losses early stopping reads", 0.0),
    Metric("train/early_stop_saturated", False, "1 when the validation minimum is at the first or last evaluation", 0.0,
           bounds=UNIT),
)


def _reading_order(metric: Metric) -> bool:
    """Reports list every explanation's consistency with its trunk before any explanation's own
    quality: whether a ticket explains as its trunk did is the question a sweep asks first."""
    return metric.pattern.startswith("xai/") and metric.reference != "consistency"


#: Training's rows, then every dimension's in `DIMENSIONS` order (explanations' consistency first):
#: the order `lth tickets`, `lth query`'s default columns and the figures list them in.
REGISTRY: tuple[Metric, ...] = TRAINING + tuple(
    sorted((metric for dimension in DIMENSIONS.values() for metric in dimension.metrics), key=_reading_order)
)

# Prefixes of the columns that describe a metric rather than being one (`dense/test/acc`, `se/...`).
DENSE_PREFIX = "dense/"  #: the trunk's value, in the tidy frame (analysis/query.py)
SE_PREFIX = "se/"  #: the sampling error of one network's value
SE_DIFF_PREFIX = "se_diff/"  #: the paired sampling error of a round's difference from its trunk
FLOOR_PREFIX = "floor/"  #: on a trunk: another seed's trunk measured against it
NONFINITE_PREFIX = "nonfinite/"  #: 1 where a round logged a NaN or infinite value (analysis/query.py)
DERIVED_PREFIXES = (DENSE_PREFIX, SE_PREFIX, SE_DIFF_PREFIX, FLOOR_PREFIX, TWIN_PREFIX, NONFINITE_PREFIX)

#: one figure each (analysis/plots.py), a few panels apiece so each stays readable at the UI's preview size
FIGURES = tuple(dict.fromkeys(("generalisation", *(figure for dimension in DIMENSIONS.values() for figure in dimension.figures))))


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
