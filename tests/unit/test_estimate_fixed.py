"""The dry run's wall time counts a sweep's fixed costs (issue 28): a sweep of many tiny lineages
was estimated at "0 s". Its calibration is held to bench/driver_scale.py's measured walls on this
machine (bench/RESULTS.md, "Driver scale"), within 30%."""
from __future__ import annotations

import re

import pytest

from bench.driver_scale import config_text
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.estimate import Machine
from lth_sweep.orchestrator.plan import make_plan

#: lineages -> measured wall seconds (bench/RESULTS.md, "Driver scale", after)
MEASURED = {200: 45.1, 1000: 108.7, 5000: 524.2, 10000: 995.9}


def seconds(text: str) -> float:
    number, unit = re.search(r"wall time \(rough\): ([\d.]+) (s|min|h)", text).groups()
    return float(number) * {"s": 1, "min": 60, "h": 3600}[unit]


@pytest.mark.parametrize("lineages", sorted(MEASURED))
def test_the_estimate_is_within_30_percent_of_the_bench(tmp_path, lineages):
    (tmp_path / "scale.yaml").write_text(config_text(lineages))
    plan = make_plan(load_config(tmp_path / "scale.yaml"), check_paths=False)
    text = plan.describe(Machine(cpus=2, gpus=0))  # the bench's machine, whatever runs the test
    estimate = seconds(text)
    assert estimate == pytest.approx(MEASURED[lineages], rel=0.3), text
    assert "fixed costs (rough, included above)" in text
    assert "bound by trial overheads" in text
