"""What one metric means: its direction, the margin the verdicts use, what it is compared with, the
figure that draws it and the range where it saturates. Rows are declared beside the measurement
that writes them (`analysis/dimensions/`, and the training's in `analysis/metrics.py`), and read
through the registry (`analysis/metrics.py`)."""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

Reference = Literal["dense", "consistency"]

UNIT = (0.0, 1.0)


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
