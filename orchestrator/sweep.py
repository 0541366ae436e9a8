"""One sweep, start to finish: plan -> Ray -> MLflow runs -> trunks -> Tuner -> summary."""
from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import ray
from ray import tune

from analysis.actors import AnalysisPool
from analysis.plots import accuracy_vs_sparsity
from analysis.query import load_sweep
from orchestrator.plan import SweepPlan, display_name
from orchestrator.scheduler import STOPPED_TAG, make_scheduler, make_stopper, scheduler_key, why_stopped
from orchestrator.progress import Console, RoundPrinter
from orchestrator.ray_session import ClusterTooSmall, check_fits, connect
from orchestrator.resume import latest_checkpoints
from orchestrator.summary import collect_rows, parent_metrics, render, succeeded, unresolvable_columns
from orchestrator.mlflow_runs import SweepTracker, check_tracking, flatten
from orchestrator.trunk_sharing import TrunkFailed, provide_trunks
from trainables.trial import lineage_trial


def expected_cost(spec) -> float:
    """Relative training cost of a lineage: retrained iterations (twice over for the reinit control)."""
    retrained = spec.trunk.total_iterations() - spec.pruning.rewind_iteration
    return spec.pruning.rounds * retrained * (2 if spec.pruning.reinit else 1)


def experiment_name(plan: SweepPlan) -> str:
    """Tune's experiment folder in the storage path: one per sweep, one subfolder per lineage."""
    return f"{plan.config.name}-{plan.sweep_id}"


def _tuner(
    plan: SweepPlan, pending: list[dict], trunk_refs: dict, analysis: dict | None, console: Console, done_rounds: int,
    callbacks: Sequence[tune.Callback] = (),
) -> tune.Tuner:
    config, resources = plan.config, plan.config.resources
    trainable = tune.with_resources(
        tune.with_parameters(lineage_trial, trunks=trunk_refs, analysis=analysis),
        {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial},
    )
    names = {spec.id: display_name(spec) for spec in plan.lineages}
    return tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(pending)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=resources.max_concurrent_trials,
            # A worker that ran one lineage has torch imported and the dataset generated: keep it.
            reuse_actors=True,
            trial_name_creator=lambda trial: names[trial.config["trial"]["lineage_id"]].replace(" ", "_"),
            trial_dirname_creator=lambda trial: trial.config["trial"]["lineage_id"],
            scheduler=make_scheduler(config.scheduler, max(spec.pruning.rounds for spec in plan.lineages)),
        ),
        run_config=tune.RunConfig(
            name=experiment_name(plan),
            storage_path=config.storage_path(Path.cwd()),
            verbose=0,
            callbacks=[RoundPrinter(console, names, plan.total_rounds, done_rounds), *callbacks],
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            stop=make_stopper(config.scheduler),
        ),
    )


def mark_stopped(plan: SweepPlan, results, tracker: SweepTracker, console: Console) -> None:
    """Lineages the scheduler stopped: their runs end KILLED, with `lth.stopped` saying why."""
    spec = plan.config.scheduler
    names = {lineage.id: display_name(lineage) for lineage in plan.lineages}
    for result in results:
        lineage_id = result.config["trial"]["lineage_id"]
        run_id = result.config["trial"]["run_id"]
        if result.error is not None or tracker.client.get_run(run_id).info.status != "RUNNING":
            continue  # failed, or finished all its rounds
        metrics = result.metrics or {}
        reason = why_stopped(spec, int(metrics.get("round", 0)), float(metrics.get(scheduler_key(spec), float("nan"))))
        tracker.client.set_tag(run_id, STOPPED_TAG, reason)
        tracker.client.set_terminated(run_id, "KILLED")
        console.say(f"{names[lineage_id]}: {reason}")


def references(pool: AnalysisPool, trunks: dict, console: Console) -> dict:
    """Each trunk's dense reference, started on the analysis actors; its object ref goes to the
    trials at once. A trial needs it only when its first round is analysed, so lineages train
    while it is measured; a thread reports each one as it arrives. A reference that fails fails
    the analysis of its lineages' first round, which fails them with the reason in MLflow."""
    refs = pool.references({tid: (ref, run_id) for tid, (ref, run_id) in trunks.items()})

    def report() -> None:
        for trunk_id, ref in refs.items():
            try:
                reference = ray.get(ref)
            except Exception as error:
                cause = error.cause if getattr(error, "cause", None) is not None else error
                console.say(f"trunk {trunk_id}: analysis of the dense trunk failed: {type(cause).__name__}: {cause}")
                continue
            console.say(f"trunk {trunk_id}: dense reference measured ({_reference_line(reference.values)})")

    threading.Thread(target=report, name="lth-references", daemon=True).start()
    return refs


def _reference_line(values: dict[str, float]) -> str:
    shown = {
        "xai/gradcam_energy_in_object": "Grad-CAM on object",
        "xai/concept_recovery": "true concepts recovered",
        "calib/ece": "ECE",
    }
    parts = [f"{label} {values[key]:.3f}" for key, label in shown.items() if key in values]
    return ", ".join(parts) or "no metrics"


def dimension_plots(config, frame, folder: Path) -> list[Path]:
    """One figure per dimension (generalisation, calibration, explanations, geometry) of the sweep's
    table as MLflow holds it."""
    from analysis.metrics import FIGURES, in_figure
    from analysis.plots import metrics_vs_sparsity

    if frame.empty:
        return []
    paths = []
    for dimension in FIGURES:
        path = metrics_vs_sparsity(frame, in_figure(dimension, frame.columns), folder / f"{dimension}_vs_sparsity.png", f"{config.name}: {dimension}")
        if path is not None:
            paths.append(path)
    return paths


def run_sweep(
    plan: SweepPlan, address: str | None = None, fmt: str = "table", console: Console | None = None,
    callbacks: Sequence[tune.Callback] = (),
) -> list[dict]:
    """Runs the sweep and returns its summary rows. `callbacks`: Tune callbacks of the caller's own,
    told of every round's result as the progress printer is."""
    config = plan.config
    console = console or Console()
    uri = config.tracking.resolved_uri(Path.cwd())
    check_tracking(uri)  # in seconds, before Ray: MLflow's client retries an absent server for minutes
    started_ray = connect(address)  # first: an unreachable cluster must leave MLflow untouched
    try:
        check_fits(config.resources.cpus_per_trial, config.resources.gpus_per_trial)
    except ClusterTooSmall:
        if started_ray:
            ray.shutdown()
        raise
    tracker = SweepTracker(uri, config.tracking.experiment, config.name, plan.sweep_id)
    tracker.log_sweep_params(flatten(config.model_dump(mode="json")))
    tracker.reopen(tracker.parent_id)
    console.say(f"sweep {config.name} ({plan.sweep_id}): {len(plan.trunks)} trunk(s), {len(plan.lineages)} lineage(s)")
    console.say(f"MLflow: {uri}, experiment {config.tracking.experiment!r}, parent run {tracker.parent_id}")

    lineage_runs, pending, done_rounds = {}, [], 0
    analysis = config.analysis
    for slot, spec in enumerate(plan.lineages):
        tags = {"lth.method": spec.pruning.method, "lth.label": spec.pruning.label, "lth.trunk": spec.trunk.id}
        if analysis.enabled:
            tags["lth.analysis"] = analysis.id
        run = tracker.child("lineage", spec, display_name(spec), tags=tags)
        lineage_runs[spec.id] = run.info.run_id
        if run.info.status == "FINISHED":
            done_rounds += spec.pruning.rounds
            console.say(f"{display_name(spec)}: already finished in run {run.info.run_id}, not trained again")
            continue
        if STOPPED_TAG in run.data.tags:  # stopped early by an earlier run: judged again as it continues
            tracker.client.delete_tag(run.info.run_id, STOPPED_TAG)
        tracker.reopen(run.info.run_id)
        pending.append(
            {
                "lineage_id": spec.id,
                "lineage": spec.model_dump(mode="json"),
                "run_id": run.info.run_id,
                "tracking_uri": uri,
                "threads": max(1, int(config.resources.cpus_per_trial)),
                "slot": slot,
                "validation_every": plan.validation_every,
                "validation_images": analysis.early_stopping_images,
            }
        )

    by_id = {spec.id: spec for spec in plan.lineages}
    storage = config.storage_path(Path.cwd())
    left = latest_checkpoints(storage, experiment_name(plan), [entry["lineage_id"] for entry in pending])
    for entry in pending:
        if entry["lineage_id"] in left:
            entry["resume_checkpoint"], entry["resume_round"] = left[entry["lineage_id"]]
            name = display_name(by_id[entry["lineage_id"]])
            console.say(f"{name}: continues after round {entry['resume_round']} (its checkpoint from an earlier run)")
            done_rounds += entry["resume_round"]

    # Longest first, so that no long lineage is left running alone at the end of the sweep.
    pending.sort(key=lambda entry: -expected_cost(by_id[entry["lineage_id"]]))
    pending_ids = {entry["lineage_id"] for entry in pending}
    pool = analysis_handles = None
    try:
        if pending and analysis.enabled:  # its actors start (import torch, build datasets) while trunks train
            pool = AnalysisPool(analysis, uri)
        needed = {spec.trunk.id for spec in plan.lineages if spec.id in pending_ids}
        trunk_plan = {tid: entry for tid, entry in plan.trunks.items() if tid in needed}
        try:
            trunks, failed_trunks = provide_trunks(
                trunk_plan, tracker, config.resources.cpus_per_trial, console.say, gpus=config.resources.gpus_per_trial,
                validation_every=plan.validation_every, validation_images=analysis.early_stopping_images,
            )
            for entry in [e for e in pending if by_id[e["lineage_id"]].trunk.id in failed_trunks]:
                pending.remove(entry)  # a failed trunk fails its own lineages, not the sweep
                tracker.fail(entry["run_id"], failed_trunks[by_id[entry["lineage_id"]].trunk.id])
            if pending and pool is not None:
                analysis_handles = {"actors": pool.actors, "references": references(pool, trunks, console)}
                specs = {tid: spec for tid, (spec, _) in plan.trunks.items()}
                pool.floors(trunks, specs, analysis_handles["references"])  # the noise floor, behind the references
        except TrunkFailed:
            tracker.client.set_terminated(tracker.parent_id, "FAILED")
            raise
        trunk_runs = {tid: run_id for tid, (_, run_id) in trunks.items()}
        for tid, (spec, _) in plan.trunks.items():
            trunk_runs.setdefault(tid, tracker.child("trunk", spec, "").info.run_id)
        if pending:
            trunk_refs = {tid: ref for tid, (ref, _) in trunks.items()}
            results = _tuner(plan, pending, trunk_refs, analysis_handles, console, done_rounds, callbacks).fit()
            if pool is not None:
                pool.drain()  # a stopped lineage's last analysis may still be running
            if config.scheduler.enabled:
                mark_stopped(plan, results, tracker, console)
    finally:
        if pool is not None:
            pool.shutdown()
        if started_ray:
            ray.shutdown()

    rows = collect_rows(plan, tracker.client, lineage_runs, trunk_runs)
    plot_dir = Path(tempfile.mkdtemp()) if "://" in storage else Path(storage) / experiment_name(plan)
    plot = accuracy_vs_sparsity(rows, plot_dir / "accuracy_vs_sparsity.png", title=f"{config.name}: test accuracy vs sparsity")
    tracker.client.log_artifact(tracker.parent_id, str(plot), "plots")
    frame = load_sweep(config.name, uri, config.tracking.experiment, parent_id=tracker.parent_id)
    unresolvable = unresolvable_columns(frame)
    plots = [plot, *dimension_plots(config, frame, plot_dir)]
    for extra in plots[1:]:
        tracker.client.log_artifact(tracker.parent_id, str(extra), "plots")
    tracker.log_missing_metrics(tracker.parent_id, parent_metrics(rows))
    tracker.describe(tracker.parent_id, f"lth-sweep `{config.name}` ({plan.sweep_id})\n\n```\n{render(rows, unresolvable=unresolvable)}\n```\n")
    failed = [row for row in rows if not succeeded(row)]
    status = "FAILED" if failed else "FINISHED"
    for row in failed:
        console.say(f"{row['name']}: {row['status']}: {row['error'] or 'no error recorded'}")
    tracker.client.set_terminated(tracker.parent_id, status)
    print(render(rows, fmt, unresolvable), flush=True)
    if fmt == "table":
        console.say(f"sweep {status.lower()}; plots: {plot.parent}/ ({', '.join(p.name for p in plots)})")
        console.say(f"MLflow UI: run `lth ui` (store {uri}), then open {tracker.run_url(tracker.parent_id)}")
    return rows

