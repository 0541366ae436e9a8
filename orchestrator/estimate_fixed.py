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

SWEEP_START_S = 10.0  # Ray started, the store opened, the parent run made
RUN_OPEN_S = 0.0245  # one trunk's or lineage's MLflow run created (driver, serially, before the trunks)
TUNE_START_S = 7.0  # from the trunks to the first trial
TRIAL_S = 0.11  # a trial's own fixed cost, on its slot
ROUND_S = 0.03  # a round's logging and checkpoint, on its slot (assumed: the bench's lineages have one round)
DRIVER_TRIAL_S = 0.05  # the driver's CPU per trial: lineages finish no faster than 1 / this
FINISH_S, FINISH_PER_LINEAGE_S = 5.0, 0.009  # the summary, the verdicts and the figures at the end


@dataclass(frozen=True)
class FixedCosts:
    before_trunks: float  # Ray, MLflow and every run opened
    between: float  # from the trunks to the first trial
    on_slots: float  # the trials' and rounds' own costs, spread over the slots
    driver: float  # the driver's own share of the lineages' phase
    finish: float  # the summary, verdicts and figures

    def lineage_phase(self, training: float) -> float:
        """The lineages' phase: their training plus what each trial and round costs besides it on
        the slots, never shorter than the driver's own share."""
        return max(training + self.on_slots, self.driver)

    def line(self, lineages: int, duration) -> str:
        return (
            f"fixed costs (rough, included above): {duration(self.before_trunks)} before the trunks (Ray, MLflow, "
            f"{lineages} lineage runs opened), {duration(self.between)} to the first trial, "
            f"{duration(self.on_slots)} of trial and round overhead on the slots, {duration(self.finish)} for the "
            f"summary and figures; the driver finishes at most {1 / DRIVER_TRIAL_S:.0f} lineages/s; "
            "calibrated by bench/driver_scale.py on 2 cores"
        )


def fixed_costs(lineages: int, trunks: int, rounds: int, slots: int) -> FixedCosts:
    return FixedCosts(
        before_trunks=SWEEP_START_S + RUN_OPEN_S * (lineages + trunks),
        between=TUNE_START_S if lineages else 0.0,
        on_slots=(TRIAL_S * lineages + ROUND_S * rounds) / max(slots, 1),
        driver=DRIVER_TRIAL_S * lineages,
        finish=FINISH_S + FINISH_PER_LINEAGE_S * lineages,
    )
