"""The dry run's fixed costs: what a sweep spends besides its FLOPs, which dominate a sweep of many
small lineages. Calibrated on this machine (2 cores) by bench/driver_scale.py (bench/RESULTS.md,
"Driver scale"): N tiny lineages of one round, where training itself is ~0.
- before the first trunk trains: Ray and the MLflow store, then one MLflow run opened per trunk
  and lineage, serially in the driver;
- per trial, on its slot: starting on a (reused) worker, its MLflow run's start and end, Tune's
  bookkeeping; per round: its masks and ticket logged, its checkpoint written;
- the driver's own time per trial (Tune's event loop, the callbacks), which caps the lineages
  finished per second however many slots there are.
"""
from __future__ import annotations

from dataclasses import dataclass

SWEEP_START_S = 8.0  # Ray started, the store opened, the parent run made
RUN_OPEN_S = 0.028  # one trunk's or lineage's MLflow run created (driver, before the trunks)
TRIAL_S = 0.09  # a trial's own fixed cost, on its slot
ROUND_S = 0.03  # a round's logging and checkpoint, on its slot
DRIVER_TRIAL_S = 0.055  # the driver's time per trial: lineages finish no faster than 1 / this


@dataclass(frozen=True)
class FixedCosts:
    start: float  # seconds before the first trunk trains
    on_slots: float  # the trials' and rounds' own costs, spread over the slots
    driver: float  # the driver's own share of the lineages' phase

    def lineage_phase(self, training: float) -> float:
        """The lineages' phase: their training plus what each trial and round costs besides it on
        the slots, never shorter than the driver's own share."""
        return max(training + self.on_slots, self.driver)

    def line(self, lineages: int, duration) -> str:
        return (
            f"fixed costs (rough, included above): {duration(self.start)} before the first trunk (Ray, MLflow, "
            f"{lineages} lineage runs opened), {duration(self.on_slots)} of trial and round overhead on the slots, "
            f"the driver at most {1 / DRIVER_TRIAL_S:.0f} lineages/s; calibrated by bench/driver_scale.py on 2 cores"
        )


def fixed_costs(lineages: int, trunks: int, rounds: int, slots: int) -> FixedCosts:
    on_slots = (TRIAL_S * lineages + ROUND_S * rounds) / max(slots, 1)
    return FixedCosts(SWEEP_START_S + RUN_OPEN_S * (lineages + trunks), on_slots, DRIVER_TRIAL_S * lineages)
