"""Ray Tune's side of a sweep: one trial per lineage, and what to do with those the scheduler stopped."""
from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.stopper import CombinedStopper, FunctionStopper

from lth_sweep.orchestrator.mlflow_runs import SweepTracker
from lth_sweep.orchestrator.plan import SweepPlan
from lth_sweep.orchestrator.progress import Console, RoundPrinter
from lth_sweep.orchestrator.lineage_searcher import LineageSearcher
from lth_sweep.orchestrator.estimate import retrainings
from lth_sweep.orchestrator.scheduler import STOPPED_TAG, make_scheduler, make_stopper, scheduler_key, why_stopped
from lth_sweep.trainables import record
from lth_sweep.trainables.checkpoint_folder import experiment_folder
from lth_sweep.trainables.specs import LineageSpec
from lth_sweep.trainables.ticket_sharing import takes_ticket
from lth_sweep.trainables.trial import lineage_trial
from lth_sweep.trainables.trial_payload import SharedObjects, TrialConfig, TrialPayload


def expected_cost(spec: LineageSpec, trains_ticket: bool = True) -> float:
    """Relative training cost of a lineage: its retrained iterations (`estimate.retrainings`)."""
    trainings, iterations = retrainings(spec, trains_ticket)
    return trainings * iterations


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
    """`stopper`: stops every trial when it says so (the user's Ctrl-C, `orchestrator/interrupt.py`).
    Trials take their configs, in `pending`'s order, from a `LineageSearcher`; their payloads from
    the object store (`trainables.trial_payload`)."""
    config, resources = plan.config, plan.config.resources
    storage = config.storage_path(Path.cwd())
    shared = dataclasses.replace(
        shared, payloads=ray.put({payload.lineage_id: payload for payload in pending}),
        checkpoints=experiment_folder(storage, experiment_name(plan)),
    )
    trainable = tune.with_resources(
        tune.with_parameters(lineage_trial, shared=shared),
        {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial},
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=lineage_source([payload.config() for payload in pending], resources.max_concurrent_trials),
            num_samples=len(pending),
            max_concurrent_trials=resources.max_concurrent_trials,
            # A worker that ran one lineage has torch imported and the dataset generated: keep it.
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_dirname,
            scheduler=make_scheduler(config.scheduler, max(spec.pruning.rounds for spec in plan.lineages)),
        ),
        run_config=tune.RunConfig(
            name=experiment_name(plan),
            storage_path=storage,
            verbose=0,
            # Every round in each trial's progress.csv and result.json, for Ray's own ExperimentAnalysis
            # (README: "Reading a sweep with Ray's own tools"); TensorBoard's files are left off.
            callbacks=[RoundPrinter(console, plan.total_rounds, done_rounds), CSVLoggerCallback(), JsonLoggerCallback(), *callbacks],
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
            stop=_combined(make_stopper(config.scheduler), stopper),
        ),
    )


#: Seconds between Tune's snapshots of its experiment state, per pending trial (at least 10 s, Tune's
#: own floor). A snapshot writes every trial's state, so its cost grows with the trials; Tune's
#: "auto" period aims at 5% of wall time, which on 2 cores was 10% of the driver's CPU at 5,000
#: lineages. lth-sweep resumes from MLflow and the lineages' checkpoints, not from this state
#: (Ray's own readers get the final one, written at the end), so a period proportional to the
#: trials keeps the snapshots' share small and constant. TUNE_GLOBAL_CHECKPOINT_S overrides it.
SNAPSHOT_SECONDS_PER_TRIAL = 0.02


@contextlib.contextmanager
def snapshot_period(trials: int) -> Iterator[None]:
    """Tune's snapshot period for a fit of `trials` trials (read by Tune when the fit starts)."""
    if "TUNE_GLOBAL_CHECKPOINT_S" in os.environ:
        yield
        return
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = str(max(10.0, SNAPSHOT_SECONDS_PER_TRIAL * trials))
    try:
        yield
    finally:
        os.environ.pop("TUNE_GLOBAL_CHECKPOINT_S", None)


# Module functions, not closures: Tune pickles them into every trial's saved state, and a closure
# over the sweep's names (all N of them) made each snapshot O(N^2): 72 MB at 1,000 lineages.
def trial_name(trial) -> str:
    return TrialConfig.of(trial.config).name.replace(" ", "_")


def trial_dirname(trial) -> str:
    return TrialConfig.of(trial.config).lineage_id


def lineage_source(configs: list[dict], max_concurrent: int | None) -> Searcher:
    """The trials' source. Tune keeps as many trials waiting for resources as a custom searcher's
    concurrency limit allows, one without a limit: unless the user set one, the limit is what Tune
    allows its own grid (200, or 1.1 per cluster CPU), so that every free slot is filled at once."""
    searcher = LineageSearcher(configs)
    if max_concurrent is not None:
        return searcher  # Tune wraps it in a ConcurrencyLimiter of that size
    return ConcurrencyLimiter(searcher, max_concurrent=max(200, int(1.1 * ray.cluster_resources().get("CPU", 1.0))))


def _combined(scheduler_stop, stopper: tune.Stopper | None):
    stoppers = [FunctionStopper(scheduler_stop)] if scheduler_stop is not None else []
    stoppers += [stopper] if stopper is not None else []
    return None if not stoppers else stoppers[0] if len(stoppers) == 1 else CombinedStopper(*stoppers)


def mark_stopped(plan: SweepPlan, results, tracker: SweepTracker, console: Console) -> None:
    """Lineages the scheduler stopped: their runs end KILLED, with `lth.stopped` saying why."""
    spec = plan.config.scheduler
    for result in results:
        payload = TrialConfig.of(result.config)
        if result.error is not None or tracker.client.get_run(payload.run_id).info.status != "RUNNING":
            continue  # failed, or finished all its rounds
        metrics = result.metrics or {}
        last = max(record.steps_with(tracker.client, payload.run_id, record.ROUND_DONE), default=0)
        reason = why_stopped(spec, int(metrics.get("round", 0)), float(metrics.get(scheduler_key(spec), float("nan"))), last)
        tracker.client.set_tag(payload.run_id, STOPPED_TAG, reason)
        tracker.client.set_terminated(payload.run_id, "KILLED")
        console.say(f"{payload.name}: {reason}")
