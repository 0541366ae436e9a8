"""Connecting to Ray: a local instance sized to the machine by default, or an existing cluster."""
from __future__ import annotations

import os

import ray

# Tune's own CSV/JSON/TensorBoard result files duplicate what MLflow records.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Returns True if this call started Ray (and so should shut it down)."""
    if ray.is_initialized():
        return False
    common = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), **common)
    return True
