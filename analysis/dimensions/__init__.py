"""The analysis dimensions, one module each (the contract: `analysis/dimension.py`). Their order
here is the order they are measured in and the order reports list their metrics and figures.
Adding one: its module, and one line below."""
from __future__ import annotations

from lth_sweep.analysis.dimension import Dimension
from lth_sweep.analysis.dimensions import calibration, concepts, flatness, gradcam, lime, mis, robustness

DIMENSIONS: dict[str, Dimension] = {
    dimension.name: dimension
    for dimension in (
        robustness.DIMENSION,
        calibration.DIMENSION,
        flatness.DIMENSION,
        gradcam.DIMENSION,
        concepts.DIMENSION,
        lime.DIMENSION,
        mis.DIMENSION,
    )
}
