"""Ray Tune's side of a sweep: one trial per lineage, and what to do with those the scheduler stopped."""
from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.stopper import CombinedStopper, FunctionStopper

from orchestrator.mlflow_runs import SweepTracker
from orchestrator.plan import SweepPlan, display_name
from orchestrator.progress import Console, RoundPrinter
from orchestrator.scheduler import STOPPED_TAG, make_scheduler, make_stopper, scheduler_key, why_stopped
from trainables.specs import LineageSpec
from trainables.ticket_sharing import has_control, takes_ticket
from trainables.trial import lineage_trial
from trainables.trial_payload import SharedObjects, TrialPayload


def expected_cost(spec: LineageSpec, trains_ticket: bool = True) -> float:
    """Relative training cost of a lineage: retrained iterations (twice over for a control that
    trains its ticket too)."""
    retrained = spec.trunk.total_iterations() - spec.pruning.rewind_iteration
    return spec.pruning.rounds * retrained * (2 if has_control(spec) and trains_ticket else 1)


def trial_order(spec: LineageSpec, shared: Collection[str]) -> tuple[bool, float]:
    """Where a pending lineage goes in Tune's queue: the controls that take their tickets from
    another lineage (`shared`: `trainables.ticket_sharing`) after every other, so that they find
    them trained; longest first within each, so that no long lineage runs alone at the end."""
    takes = takes_ticket(spec, shared)
    return takes, -expected_cost(spec, trains_ticket=not takes)


def experiment_name(plan: SweepPlan) -> str:
    """Tune's experiment folder in the storage path: one per sweep, one subfolder per lineage."""
    return f"{plan.config.name}-{plan.sweep_id}"


def make_tuner(
    plan: SweepPlan, pending: list[TrialPayload], shared: SharedObjects, console: Console, done_rounds: int,
    callbacks: Sequence[tune.Callback] = (), stopper: tune.Stopper | None = None,
) -> tune.Tuner:
    """`stopper`: stops every trial when it says so (the user's Ctrl-C, `orchestrator/interrupt.py`)."""
    config, resources = plan.config, plan.config.resources
    trainable = tune.with_resources(
        tune.with_parameters(lineage_trial, shared=shared),
        {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial},
    )
    names = {spec.id: display_name(spec) for spec in plan.lineages}
    return tune.Tuner(
        trainable,
        param_space={TrialPayload.KEY: tune.grid_search([payload.to_config()[TrialPayload.KEY] for payload in pending])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=resources.max_concurrent_trials,
            # A worker that ran one lineage has torch imported and the dataset generated: keep it.
            reuse_actors=True,
            trial_name_creator=lambda trial: names[TrialPayload.of(trial.config).lineage_id].replace(" ", "_"),
            trial_dirname_creator=lambda trial: TrialPayload.of(trial.config).lineage_id,
            scheduler=make_scheduler(config.scheduler, max(spec.pruning.rounds for spec in plan.lineages)),
        ),
        run_config=tune.RunConfig(
            name=experiment_name(plan),
            storage_path=config.storage_path(Path.cwd()),
            verbose=0,
            # Every round in each trial's progress.csv and result.json, for Ray's own ExperimentAnalysis
            # (README: "Reading a sweep with Ray's own tools"); TensorBoard's files are left off.
            callbacks=[RoundPrinter(console, names, plan.total_rounds, done_rounds), CSVLoggerCallback(), JsonLoggerCallback(), *callbacks],
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            stop=_combined(make_stopper(config.scheduler), stopper),
        ),
    )


def _combined(scheduler_stop, stopper: tune.Stopper | None):
    stoppers = [FunctionStopper(scheduler_stop)] if scheduler_stop is not None else []
    stoppers += [stopper] if stopper is not None else []
    return None if not stoppers else stoppers[0] if len(stoppers) == 1 else CombinedStopper(*stoppers)


def mark_stopped(plan: SweepPlan, results, tracker: SweepTracker, console: Console) -> None:
    """Lineages the scheduler stopped: their runs end KILLED, with `lth.stopped` saying why."""
    spec = plan.config.scheduler
    names = {lineage.id: display_name(lineage) for lineage in plan.lineages}
    for result in results:
        payload = TrialPayload.of(result.config)
        if result.error is not None or tracker.client.get_run(payload.run_id).info.status != "RUNNING":
            continue  # failed, or finished all its rounds
        metrics = result.metrics or {}
        reason = why_stopped(spec, int(metrics.get("round", 0)), float(metrics.get(scheduler_key(spec), float("nan"))))
        tracker.client.set_tag(payload.run_id, STOPPED_TAG, reason)
        tracker.client.set_terminated(payload.run_id, "KILLED")
        console.say(f"{names[payload.lineage_id]}: {reason}")
