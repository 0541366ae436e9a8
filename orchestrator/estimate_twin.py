"""The dense twins' side of the dry-run estimate (`trainables.twin`, `orchestrator.twin_handoff`):
one more dense training per trunk, on an analysis actor's resources, `analysis.actors` at a time,
and one more measurement per trunk on the actors, both beside the lineages. `analysis.twin: false`
(or the analysis off) removes them."""
from __future__ import annotations

from dataclasses import dataclass

from lth_sweep.trainables.specs import TrunkSpec
from lth_sweep.trainables.twin import twin_recipe


@dataclass(frozen=True)
class TwinResources:
    """What a twin's task asks Ray for, in the fields `estimate.training_seconds` reads: an analysis
    actor's share (at least one CPU's worth of time where the actors share the cores)."""

    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent_trials: int


@dataclass(frozen=True)
class TwinEstimate:
    count: int  # twins, one per trunk
    flops: float  # their training and evaluation
    training: float  # seconds of their trainings, `actors` at a time
    measurements: list[float]  # seconds of each twin's measurement on an actor


def twin_jobs(analysis, trunks: list[tuple[TrunkSpec, object]]) -> list[tuple[TrunkSpec, object]]:
    """(the twin's recipe, its cost: the trunk's) per trunk; none when the twins are off."""
    if not (analysis.enabled and analysis.twin):
        return []
    return [(twin_recipe(spec), cost) for spec, cost in trunks]


def twin_resources(analysis) -> TwinResources:
    return TwinResources(analysis.cpus_per_actor or 1.0, analysis.gpus_per_actor, analysis.actors)


def twin_line(twins: TwinEstimate, total_flops: float, added_seconds: float, shared_cores: int, si, duration) -> str:
    """The dry run's line naming the twins, their share of the compute and what they add to the wall
    time; `shared_cores` > 0: the actors (and so the twins) share that many cores with the trials
    (`cpus_per_actor: 0`), which then train slower by up to the twins' work spread over them."""
    share = twins.flops / total_flops if total_flops else 0.0
    work = twins.training + sum(twins.measurements)
    added = f"+{duration(added_seconds)} of wall time" + (
        f" with cores of their own, up to +{duration(work / shared_cores)} sharing the trials' cores" if shared_cores else ""
    )
    return (
        f"dense twins (analysis.twin; the consistency noise floor): {twins.count} dense training(s) + {twins.count} "
        f"measurement(s), {si(twins.flops, 'FLOP')} = {share:.0%} of the compute; ~{duration(twins.training)} of "
        f"training on the analysis actors' resources and ~{duration(sum(twins.measurements))} of measurement, beside "
        f"the lineages: {added}; analysis.twin: false turns them off"
    )
