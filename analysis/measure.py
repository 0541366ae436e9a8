"""Measuring one network against its dense trunk: every dimension the analysis spec turns on.

`measure(network, dense=None)` on the trunk returns the dense values and the `Reference` that
every round of its lineages is compared with; on a round, the metrics of that round. Each
dimension (`analysis/dimensions/`) reads the fixed samples, writes metrics (and artifacts for a
person to look at) and, for the trunk, its part of the reference.
"""
from __future__ import annotations

import time

from lth_sweep.analysis.dimension import Network, Reference
from lth_sweep.analysis.dimensions import DIMENSIONS


def measure(net: Network, dense: Reference | None = None) -> tuple[dict[str, float], Reference]:
    """All enabled dimensions, compared with `dense` (the trunk's Reference; None when `net` is
    the trunk); returns (metrics, this network's own Reference)."""
    net.model.eval()
    metrics: dict[str, float] = {}
    parts: dict[str, object] = {}
    per_unit: dict[str, object] = {}
    for name, dimension in DIMENSIONS.items():
        if getattr(net.spec, name).enabled:
            started = time.perf_counter()
            part = dimension.measure(net, dense, metrics)
            per_unit |= part.pop("per_unit", {})
            parts |= part
            metrics[f"analysis/seconds/{name}"] = time.perf_counter() - started
    return metrics, Reference(values=dict(metrics), per_unit=per_unit, **parts)
