"""Machine-readable output is strict JSON: no NaN or Infinity, which JSON.parse and jq reject."""
from __future__ import annotations

import json
import math

import numpy as np

from lth_sweep.analysis import strict_json
from lth_sweep.orchestrator.summary import render


def strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_at_any_depth():
    value = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -math.inf}], "d": np.float64("nan"), "e": np.float32(0.5)}
    assert strict_loads(strict_json.dumps(value)) == {"a": None, "b": [1.0, None, {"c": None}], "d": None, "e": 0.5}


def test_the_sweep_summary_in_json_parses_strictly():
    row = {"name": "imp s0", "gradcam_rho": float("nan"), "dense_acc": 0.99, "curve": [(0.5, 0.9)]}
    assert strict_loads(render([row], "json")) == [{"name": "imp s0", "gradcam_rho": None, "dense_acc": 0.99}]
