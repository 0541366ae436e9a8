"""One sweep, start to finish, in five phases: open its MLflow runs, attach the checkpoints an
earlier driver left, provide the dense trunks (and start their analysis), run the lineages as Tune
trials, finish (read MLflow back, plots, the parent run's summary and status).

Every phase reports progress through a `Console`; the summary table is the caller's to print
(`SweepOutcome.rows`, `orchestrator.summary.render`).
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs
import ray
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from lth_sweep.analysis.actors import AnalysisPool
from lth_sweep.analysis.colors import method_colors, series_key
from lth_sweep.analysis.plots import sweep_figures
from lth_sweep.analysis.sweep_verdicts import judge_defaults
from lth_sweep.analysis.query import read_sweep
from lth_sweep.orchestrator.analysis_handoff import hand_off
from lth_sweep.orchestrator.interrupt import Interruption, SweepInterrupted
from lth_sweep.orchestrator.mlflow_inputs import log_table
from lth_sweep.orchestrator.lease import Lease, SweepBusy, wait_while_held
from lth_sweep.orchestrator.mlflow_runs import SweepTracker, find_parent, finished_runs, flatten
from lth_sweep.orchestrator.plan import SweepPlan, display_name
from lth_sweep.orchestrator.progress import Console, LogConsole
from lth_sweep.orchestrator.ray_session import ClusterTooSmall, check_fits, connect
from lth_sweep.orchestrator.scheduler import STOPPED_TAG
from lth_sweep.orchestrator.sweep_failure import cause_of, fail_unfinished, full_disk_cause
from lth_sweep.orchestrator.summary import collect_rows, indistinct_columns, render, render_markdown, succeeded, summary_frame
from lth_sweep.orchestrator.tracking_store import check_tracking, create_store
from lth_sweep.orchestrator.trunk_sharing import provide_trunks, trunk_name, trunk_tags
from lth_sweep.orchestrator.tuner import experiment_name, make_tuner, mark_stopped, snapshot_period, trial_order
from lth_sweep.trainables import provenance, record
from lth_sweep.trainables.run_logger import RunLogger
from lth_sweep.trainables.ticket_board import TicketBoard
from lth_sweep.trainables.ticket_sharing import shared_tickets
from lth_sweep.trainables.checkpoint_folder import experiment_folder, latest_checkpoints
from lth_sweep.trainables.trial_payload import ResumePoint, SharedObjects, TicketSharing, TrialPayload


@dataclass
class SweepRuns:
    """The sweep's MLflow runs and the lineages still to run."""

    tracker: SweepTracker
    lease: Lease
    lineage_runs: dict[str, str] = field(default_factory=dict)  # lineage id -> run id
    pending: list[TrialPayload] = field(default_factory=list)
    done_rounds: int = 0  # rounds already in MLflow (finished lineages, checkpoints to continue from)
    stale: list[provenance.StaleRun] = field(default_factory=list)  # reused, though another lth-sweep version made them
    failure: str | None = None  # why Ray Tune itself failed under the sweep (`sweep_failure.cause_of`)


@dataclass(frozen=True)
class SweepOutcome:
    rows: list[dict]  # one per lineage (`orchestrator.summary.collect_rows`)
    indistinct: dict[str, str]  # drift columns on which the sweep cannot tell methods apart, and why
    status: str  # the parent run's: FINISHED, or FAILED when a lineage failed
    plots: list[Path]
    tracking_uri: str
    parent_url: str  # the parent run in MLflow's UI (`lth ui`)
    comparison_url: str  # the sweep's lineages in MLflow's chart view
    stale: tuple[provenance.StaleRun, ...] = ()  # finished runs reused though another lth-sweep version made them

    @property
    def succeeded(self) -> bool:
        return self.status == "FINISHED"

    def table(self):
        """The summary as a pandas DataFrame, one row per lineage."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def summary(self, fmt: str = "table") -> str:
        """The summary the CLI prints: "table" (with the noise floor under it), "json" or "csv"."""
        return render(self.rows, fmt, self.indistinct)


def run_sweep(
    plan: SweepPlan, address: str | None = None, console: Console | None = None, callbacks: Sequence[tune.Callback] = (),
    check_store: bool = True, wait: bool = False,
) -> SweepOutcome:
    """Runs the sweep. `callbacks`: Tune callbacks of the caller's own, told of every round's
    result as the progress printer is. `check_store=False`: the caller has checked the tracking
    store already (the CLI does, before importing Ray). Raises SweepBusy while another driver runs
    the sweep on the store (`wait`: waits for it to end instead), SweepInterrupted on Ctrl-C,
    SIGTERM or SIGHUP."""
    console = console or LogConsole()
    uri = plan.config.tracking.resolved_uri(Path.cwd())
    config = plan.config
    if check_store:  # in seconds, before Ray: MLflow's client retries an absent server for minutes
        check_tracking(uri)
    with Interruption() as interruption:  # a signal while waiting for another driver: nothing opened yet
        wait_while_held(lambda: find_parent(uri, config.tracking.experiment, config.name, plan.sweep_id), config.name, wait, console.say)
    runs = None
    try:
        if not interruption.happened:
            if all_finished(plan, uri):  # nothing to train: no Ray
                runs = open_runs(plan, uri, console, wait)
                return finish(plan, runs, console)
            runs = train(plan, uri, address, console, callbacks, wait, interruption)
            if runs is not None and runs.failure is not None:
                console.say(f"sweep {config.name}: {runs.failure}")
                fail_unfinished(runs.tracker, runs.failure)
        if runs is not None and runs.lease.lost_to is not None:
            raise SweepBusy(f"sweep {config.name}: taken over by {runs.lease.lost_to.describe(time.time())} while "
                            "this driver stalled; its trials stopped, the other driver continues the sweep")
        if interruption.happened:
            raise SweepInterrupted(close_interrupted(plan, runs, interruption.cause), interruption.signum)
        return finish(plan, runs, console)
    finally:
        if runs is not None:
            runs.lease.release()


def train(
    plan: SweepPlan, uri: str, address: str | None, console: Console, callbacks: Sequence[tune.Callback], wait: bool,
    interruption: Interruption,
) -> SweepRuns | None:
    """Ray up, the runs opened, trunks provided, lineages run as trials; Ray down. The runs (None
    when a signal came before they were opened); `interruption` says whether one came."""
    runs = None
    with interruption:
        started_ray = start_ray(plan, address)  # first: an unreachable cluster must leave MLflow untouched
        interruption.install()  # ray.init replaced the SIGTERM handler
        try:
            create_store(uri)  # a new SQLite store, made by one of the drivers that start together
            runs = open_runs(plan, uri, console, wait)
            runs.lease.on_lost = lambda holder: interruption.stop("another driver took the sweep over")
            attach_resumes(plan, runs, console)
            pool = AnalysisPool(plan.config.analysis, uri) if runs.pending and plan.config.analysis.enabled else None
            try:  # the pool's actors start (import torch, build datasets) while trunks train
                shared = provide_lineage_trunks(plan, runs, pool, console)
                run_trials(plan, runs, shared, pool, console, callbacks, interruption)
            finally:
                if pool is not None:
                    pool.shutdown()
        finally:
            if started_ray:
                ray.shutdown()
    return runs


def all_finished(plan: SweepPlan, uri: str) -> bool:
    """Every lineage FINISHED in MLflow, and none of the sweep's runs to be made again."""
    config = plan.config
    finished = finished_runs(uri, config.tracking.experiment, config.name, plan.sweep_id)
    if not all((record.LINEAGE_KIND, spec.id) in finished for spec in plan.lineages):
        return False
    current = provenance.versions()[record.VERSION_LTH_SWEEP]
    return not (config.tracking.rerun_stale and any(provenance.is_stale(tags, current) for tags in finished.values()))


def start_ray(plan: SweepPlan, address: str | None) -> bool:
    """Connects to (or starts) Ray and checks one trial fits; True when this call started Ray."""
    started_ray = connect(address)
    try:
        check_fits(plan.config.resources.cpus_per_trial, plan.config.resources.gpus_per_trial, plan.config.analysis)
    except ClusterTooSmall:
        if started_ray:
            ray.shutdown()
        raise
    return started_ray


def open_runs(plan: SweepPlan, uri: str, console: Console, wait: bool = False) -> SweepRuns:
    """The parent run, its lease taken (`orchestrator/lease.py`), and one child per lineage, found
    again or created; finished lineages are left alone, the others (re)opened and given a trial
    payload."""
    config = plan.config
    tracker = SweepTracker(uri, config.tracking.experiment, config.name, plan.sweep_id)
    lease = Lease(tracker.client, tracker.parent_id, config.name)
    lease.take(wait, console.say)
    tracker.log_sweep_params(flatten(config.model_dump(mode="json", exclude={"tracking": {"rerun_stale"}})))
    tracker.reopen(tracker.parent_id)
    console.say(f"sweep {config.name} ({plan.sweep_id}): {len(plan.trunks)} trunk(s), {len(plan.lineages)} lineage(s)")
    console.say(f"MLflow: {uri}, experiment {config.tracking.experiment!r}, parent run {tracker.parent_id}")
    runs = SweepRuns(tracker, lease)
    judge_stale(plan, runs, console)
    labels = [spec.pruning.label for spec in plan.lineages]
    colors, group_key = method_colors(labels), series_key(labels)
    for slot, spec in enumerate(plan.lineages):
        tags = {
            record.METHOD: spec.pruning.method, record.LABEL: spec.pruning.label, record.TRUNK: spec.trunk.id,
            record.SEED: str(spec.trunk.seed), record.RUN_COLOR: colors[spec.pruning.label],
            group_key: spec.pruning.label,  # what MLflow's view groups by: its colours tell the labels apart
        }
        if config.analysis.enabled:
            tags[record.ANALYSIS] = config.analysis.id
        run = tracker.child(record.LINEAGE_KIND, spec, display_name(spec), tags=tags)
        runs.lineage_runs[spec.id] = run.info.run_id
        if run.info.status == "FINISHED":
            runs.done_rounds += spec.pruning.rounds
            console.say(f"{display_name(spec)}: already finished in run {run.info.run_id}, not trained again")
            continue
        if STOPPED_TAG in run.data.tags:  # stopped early by an earlier run: judged again as it continues
            tracker.client.delete_tag(run.info.run_id, STOPPED_TAG)
        tracker.reopen(run.info.run_id)
        runs.pending.append(TrialPayload(
            lineage=spec, run_id=run.info.run_id, threads=max(1, int(config.resources.cpus_per_trial)),
            slot=slot, validation_every=plan.validation_every, validation_images=config.analysis.early_stopping_images,
        ))
    return runs


def judge_stale(plan: SweepPlan, runs: SweepRuns, console: Console) -> None:
    """Finished trunks and lineages that another lth-sweep version made (or one from before versions
    were recorded): reused and reported, or with `tracking.rerun_stale` deleted (restorable in
    MLflow's UI) with their checkpoints, to be made again; so is every lineage of a trunk made again."""
    tracker, rerun = runs.tracker, plan.config.tracking.rerun_stale
    current = tracker.provenance[record.VERSION_LTH_SWEEP]
    remade: set[str] = set()
    entries = [(record.TRUNK_KIND, tid, trunk_name(spec), None) for tid, (spec, _) in plan.trunks.items()]
    entries += [(record.LINEAGE_KIND, spec.id, display_name(spec), spec.trunk.id) for spec in plan.lineages]
    for kind, lth_id, name, trunk_id in entries:
        run = tracker.existing(kind, lth_id)
        if run is None:
            continue
        stale = run.info.status == "FINISHED" and provenance.is_stale(run.data.tags, current)
        made_by = provenance.made_by(run.data.tags)
        if rerun and (stale or trunk_id in remade):
            tracker.discard(run)
            remade.add(lth_id)
            why = f"made by lth-sweep {made_by or provenance.UNKNOWN}" if stale else "its trunk is trained again"
            console.say(f"{name}: {why}: run {run.info.run_id} deleted (restorable in MLflow's UI), trained again")
        elif stale:
            runs.stale.append(provenance.StaleRun(kind, name, lth_id, run.info.run_id, made_by))
            console.say(
                f"{name}: reused from run {run.info.run_id}, made by lth-sweep {made_by or provenance.UNKNOWN}, "
                f"not {current}; --rerun-stale trains it again"
            )
            RunLogger(tracker.uri, run.info.run_id).note(
                None, [f"reused by lth-sweep {current}; made by lth-sweep {made_by or provenance.UNKNOWN}"]
            )
    lineages = remade & {spec.id for spec in plan.lineages}
    if lineages:  # a lineage made again must not continue from the old run's checkpoints
        filesystem, root = pafs.FileSystem.from_uri(plan.config.storage_path(Path.cwd()))
        for lineage_id in lineages:
            filesystem.delete_dir_contents(f"{root.rstrip('/')}/{experiment_name(plan)}/{lineage_id}", missing_dir_ok=True)


def attach_resumes(plan: SweepPlan, runs: SweepRuns, console: Console) -> None:
    """Checkpoints an earlier driver left in the storage path: their lineages continue from them.
    Then the pending lineages are put in Tune's order (`tuner.trial_order`)."""
    storage = plan.config.storage_path(Path.cwd())
    left = latest_checkpoints(experiment_folder(storage, experiment_name(plan)), [payload.lineage_id for payload in runs.pending])
    tracker = runs.tracker
    for index, payload in enumerate(runs.pending):
        # A run this driver just created has no rounds: no MLflow query per new lineage.
        logged = set() if tracker.created_here(payload.run_id) else record.steps_with(tracker.client, payload.run_id, record.ROUND_DONE)
        checkpoint, round_index = left.get(payload.lineage_id, (None, 0))
        if checkpoint and set(range(1, round_index + 1)) <= logged:
            runs.pending[index] = dataclasses.replace(payload, resume=ResumePoint(checkpoint, round_index))
            console.say(f"{display_name(payload.lineage)}: continues after round {round_index} (its checkpoint from an earlier run)")
            runs.done_rounds += round_index
        elif checkpoint:  # a trial logs a round before checkpointing it: this store never saw these rounds
            RunLogger(tracker.uri, payload.run_id).note(None, [
                f"the checkpoint of round {round_index} in {storage} is not this store's (its rounds are not in it: "
                "a copied or moved folder?): not used, restarted from round 1"
            ])
        elif logged:
            RunLogger(tracker.uri, payload.run_id).note(None, [
                f"no checkpoint left in {storage}: restarted from round 1 (rounds already in MLflow are not logged again)"
            ])
    shared = shared_tickets([payload.lineage for payload in runs.pending])
    runs.pending.sort(key=lambda payload: trial_order(payload.lineage, shared))


def provide_lineage_trunks(plan: SweepPlan, runs: SweepRuns, pool: AnalysisPool | None, console: Console) -> SharedObjects:
    """The trunks of the pending lineages, trained or loaded once (`trunk_sharing`), and their
    analysis started on the pool. A trunk that failed fails its own lineages, not the sweep."""
    tracker = runs.tracker
    needed = {payload.lineage.trunk.id for payload in runs.pending}
    trunks, failed = provide_trunks(
        {tid: entry for tid, entry in plan.trunks.items() if tid in needed}, tracker, plan.config.resources.cpus_per_trial,
        console.say, gpus=plan.config.resources.gpus_per_trial, validation_every=plan.validation_every,
        validation_images=plan.config.analysis.early_stopping_images,
    )
    for payload in [p for p in runs.pending if p.lineage.trunk.id in failed]:
        runs.pending.remove(payload)
        tracker.fail(payload.run_id, failed[payload.lineage.trunk.id])
    for tid, (spec, _) in plan.trunks.items():  # every trunk has its run, for the summary's dense side
        if tid not in trunks:
            tracker.child(record.TRUNK_KIND, spec, trunk_name(spec), tags=trunk_tags(spec))
    analysis = None
    if runs.pending and pool is not None:
        analysis = hand_off(pool, trunks, {tid: spec for tid, (spec, _) in plan.trunks.items()}, console.say)
    return SharedObjects(tracker.uri, {tid: ref for tid, (ref, _) in trunks.items()}, analysis, ticket_board(runs.pending))


def ticket_board(pending: list[TrialPayload]) -> TicketSharing | None:
    """The board on which lineages that train the same ticket leave it for each other
    (`trainables.ticket_sharing`); None when no two pending lineages do. It holds tensors, not
    work: no CPU."""
    shared = shared_tickets([payload.lineage for payload in pending])
    if not shared:
        return None
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)  # lost only with the driver
    board = ray.remote(TicketBoard).options(num_cpus=0, scheduling_strategy=here).remote(shared)
    return TicketSharing(board, frozenset(shared))


def run_trials(
    plan: SweepPlan, runs: SweepRuns, shared: SharedObjects, pool: AnalysisPool | None, console: Console,
    callbacks: Sequence[tune.Callback], interruption: Interruption,
) -> None:
    """One Tune trial per pending lineage; then the analyses still running, and the lineages the
    scheduler stopped (their runs end KILLED, saying why). A Ctrl-C stops every trial."""
    if not runs.pending:
        return
    tuner = make_tuner(plan, runs.pending, shared, console, runs.done_rounds, callbacks, interruption.stopper())
    interruption.tune_running = True
    try:
        with snapshot_period(len(runs.pending)):
            results = tuner.fit()
    except Exception as error:  # noqa: BLE001 - Tune's own failure (a full disk): the sweep still ends
        runs.failure = cause_of(error, plan.config.storage_path(Path.cwd()))
        return
    finally:
        interruption.tune_running = False
    if interruption.happened:
        return
    runs.failure = full_disk_cause(plan.config.storage_path(Path.cwd()))  # trials that could not checkpoint failed
    if pool is not None:
        pool.drain()  # a stopped lineage's last analysis may still be running
    if plan.config.scheduler.enabled:
        mark_stopped(plan, results, runs.tracker, console)


def close_interrupted(plan: SweepPlan, runs: SweepRuns | None, cause: str = "Ctrl-C") -> str:
    """After a Ctrl-C (or the `cause` signal): every run of the sweep still RUNNING ends KILLED (MLflow's "interrupted");
    finished lineages stay FINISHED. Returns what to tell the user."""
    if runs is not None:
        tracker = runs.tracker
        for run in tracker.still_running():
            RunLogger(tracker.uri, run.info.run_id).note(None, [f"interrupted ({cause}); the next run of the sweep continues it"])
            tracker.client.set_terminated(run.info.run_id, "KILLED")
        tracker.client.set_terminated(tracker.parent_id, "KILLED")
        done = sum(1 for run_id in runs.lineage_runs.values() if tracker.client.get_run(run_id).info.status == "FINISHED")
        return f"sweep {plan.config.name} interrupted by {cause} ({done}/{len(plan.lineages)} lineages finished); run the same command to continue"
    return f"sweep {plan.config.name} interrupted by {cause} before it started; run the same command to start it"


def log_verdicts(client, parent_id: str, verdicts: dict | None) -> str:
    """The verdicts on the parent run: the paper tables (Markdown), the terminal text and the long
    table (JSON for the UI's table view, and CSV); returns the Markdown of the winning tickets for
    the run's description."""
    if verdicts is None:
        return ""
    from lth_sweep.analysis import paper_table
    from lth_sweep.analysis.sweep_verdicts_render import render as render_verdicts

    log_table(client, parent_id, paper_table.long_form(verdicts), record.VERDICTS_TABLE, record.VERDICTS_CSV)
    client.log_text(parent_id, paper_table.markdown(verdicts), record.VERDICTS_MARKDOWN)
    client.log_text(parent_id, render_verdicts(verdicts), record.VERDICTS_TEXT)
    winning = {**verdicts, "configurations": [
        {**c, "metrics": {}} for c in verdicts["configurations"]
    ]}
    return (
        "\n## Winning tickets\n\n" + paper_table.markdown(winning)
        + f"\nEvery metric's verdicts, per configuration: `{record.VERDICTS_MARKDOWN}`, `{record.VERDICTS_TEXT}` "
        f"(as `lth tickets` prints them) and `{record.VERDICTS_CSV}`.\n"
    )


def finish(plan: SweepPlan, runs: SweepRuns, console: Console) -> SweepOutcome:
    """Reads the sweep back from MLflow once; logs the plots and the summary (description and table)
    to the parent run, and ends it FINISHED, or FAILED when a lineage failed."""
    config, tracker = plan.config, runs.tracker
    sweep = read_sweep(config.name, tracker.uri, config.tracking.experiment, parent_id=tracker.parent_id)
    frame = sweep.frame()
    verdicts = judge_defaults(frame)
    rows = collect_rows(plan, sweep, frame, verdicts)
    plots = draw_plots(plan, rows, frame, console)
    for plot in plots:
        tracker.client.log_artifact(tracker.parent_id, str(plot), record.PLOTS_FOLDER)
    log_table(tracker.client, tracker.parent_id, summary_frame(rows), record.SUMMARY_TABLE, record.SUMMARY_CSV)
    verdict_markdown = log_verdicts(tracker.client, tracker.parent_id, verdicts)
    indistinct = indistinct_columns(verdicts)
    tracker.describe(
        tracker.parent_id,
        f"lth-sweep `{config.name}` ({plan.sweep_id})\n\n{render_markdown(rows, indistinct)}\n\n"
        f"The same table: artifact `{record.SUMMARY_TABLE}` (and `{record.SUMMARY_CSV}`); figures: `{record.PLOTS_FOLDER}/`.\n"
        f"{verdict_markdown}",
    )
    failed = [row for row in rows if not succeeded(row)]
    for row in failed:
        console.say(f"{row['name']}: {row['status']}: {row['error'] or 'no error recorded'}")
    status = "FAILED" if failed or record.ERROR in tracker.client.get_run(tracker.parent_id).data.tags else "FINISHED"
    tracker.client.set_terminated(tracker.parent_id, status)
    return SweepOutcome(
        rows, indistinct, status, plots, tracker.uri, tracker.run_url(tracker.parent_id),
        tracker.comparison_url(series_key(spec.pruning.label for spec in plan.lineages)),
        tuple(runs.stale),
    )


def draw_plots(plan: SweepPlan, rows: list[dict], frame, console: Console) -> list[Path]:
    """The sweep's figures, in its folder under the storage path; where that cannot take them (a
    remote storage, a full disk), in a temporary folder."""
    config = plan.config
    storage = config.storage_path(Path.cwd())

    def draw(folder: Path) -> list[Path]:
        return sweep_figures(rows, frame, folder, config.name)

    if "://" in storage:
        return draw(Path(tempfile.mkdtemp()))
    folder = Path(storage) / experiment_name(plan)
    try:
        return draw(folder)
    except OSError as error:
        console.say(f"plots not written to {folder} ({error.strerror or error}); written to a temporary folder")
        return draw(Path(tempfile.mkdtemp()))
