"""The optional round-level scheduler: abandon lineages already far below their trunk.

Each trial reports, with every round, `vs_trunk/test/acc` (accuracy minus its trunk's) and
`vs_trunk/test/loss` (the trunk's loss minus its own; `trainables.trial.trunk_distances`): higher
is better for both, and lineages of
different trunks compare on the same scale. `scheduler.kind: asha` runs Tune's ASHA with rounds as
its time; `scheduler.max_drop` stops any lineage whose value falls below -max_drop.

A stopped lineage keeps what it measured: its rounds and their analyses stay in MLflow, and its
run ends KILLED with `lth.stopped` saying why. It is not a failure (the sweep exits 0). Running the
sweep again continues it from its last round, where the scheduler judges it again.
"""
from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from lth_sweep.orchestrator.config import Scheduler
from lth_sweep.trainables import record

STOPPED_TAG = record.STOPPED


def scheduler_key(spec: Scheduler) -> str:
    return f"vs_trunk/{spec.metric}"


def make_scheduler(spec: Scheduler, max_rounds: int) -> TrialScheduler:
    if spec.kind == "asha":
        return ASHAScheduler(
            time_attr="round", metric=scheduler_key(spec), mode="max", max_t=max_rounds,
            grace_period=min(spec.grace_rounds, max_rounds), reduction_factor=spec.reduction_factor,
        )
    return FIFOScheduler()


def make_stopper(spec: Scheduler):
    """Tune's `stop` callable for `max_drop`, or None."""
    if spec.max_drop is None:
        return None
    key, limit = scheduler_key(spec), -spec.max_drop

    def far_below_its_trunk(trial_id: str, result: dict) -> bool:
        value = result.get(key)
        return value is not None and value < limit  # NaN (a failed trial's last report) compares False

    return far_below_its_trunk


def why_stopped(spec: Scheduler, judged: int, value: float, last: int) -> str:
    """`judged`: the round whose Tune row stopped the lineage; `last`: its last round in MLflow,
    one later when the row waited for its analysis while that round trained (`trainables.trial.TuneRows`)."""
    by = "max_drop" if spec.max_drop is not None and value < -spec.max_drop else "ASHA"
    return (
        f"stopped by {by} after round {max(judged, last)}: {spec.metric} {value:+.4f} against its trunk"
        + (f" at round {judged}" if last > judged else "")
        + (f" (max_drop {spec.max_drop})" if by == "max_drop" else f" (below the top 1/{spec.reduction_factor:g} at its rung)")
    )
