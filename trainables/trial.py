"""The Ray Tune function trainable: one trial = one lineage.

Each round is logged to MLflow, checkpointed (weights, masks, RNG state) in the lineage's folder
of the storage path (`trainables.checkpoint_folder`), then reported to Tune, so that a restarted
trial continues after its last finished round instead of starting over. On an analysed lineage a
round's Tune row waits for its analysis (`TuneRows`).
"""
from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from lth_sweep.trainables.checkpoint import CheckpointCorrupt, load_evaluated, load_state, save_state
from lth_sweep.trainables.checkpoint_folder import latest_checkpoints, save_checkpoint
from lth_sweep.trainables.device import placement, resolve_device
from lth_sweep.trainables.lineage import LayerCollapseError, LineageState, RoundResult, run_lineage
from lth_sweep.trainables.round_analysis import AnalysisFailed, RoundAnalysis
from lth_sweep.trainables import record
from lth_sweep.trainables.run_logger import RunLogger
from lth_sweep.trainables.ticket_sharing import TicketExchange, ticket_id
from lth_sweep.trainables.trial_payload import SharedObjects, TrialConfig, TrialPayload, payload_of
from lth_sweep.trainables.training import DivergedError

DETERMINISTIC_FAILURES = (DivergedError, LayerCollapseError, AnalysisFailed)
#: What each round's training tells Tune besides `round` and `vs_trunk/...`: the headline metrics,
#: not every per-layer sparsity. Tune keeps running statistics of every metric of every trial in the
#: driver's memory and in each snapshot of its experiment state (~2.4 KB per metric and trial): with
#: every per-layer sparsity a 5,000-lineage sweep's driver passed 2.5 GB. MLflow holds every metric.
TUNE_METRICS = (
    "sparsity", "weights/remaining", "test/acc", "test/loss", "train/early_stop_iteration", "train/early_stop_acc",
    "time/round_seconds",
)


def trunk_distances(metrics: dict[str, float], trunk_metrics: dict[str, float]) -> dict[str, float]:
    """For the optional scheduler (orchestrator/scheduler.py): how far this round is from its
    trunk, signed so that higher is better; keys missing on either side are left out."""
    out = {}
    if "test/acc" in metrics and "test/acc" in trunk_metrics:
        out["vs_trunk/test/acc"] = metrics["test/acc"] - trunk_metrics["test/acc"]
    if "test/loss" in metrics and "test/loss" in trunk_metrics:
        out["vs_trunk/test/loss"] = trunk_metrics["test/loss"] - metrics["test/loss"]
    return out


class TuneRows:
    """What Tune hears of each round: `round`, the headline metrics, the distances to the trunk and,
    on an analysed lineage, every metric its analysis measured. An analysed round's row waits for
    its analysis, which runs while the next round trains: Tune (its results, `progress.csv`, the
    console's round lines and the optional scheduler) sees such a round one round after MLflow."""

    def __init__(self, trunk_metrics: dict[str, float], analysed: bool):
        self.trunk_metrics, self.analysed = trunk_metrics, analysed
        self.waiting: dict[int, dict[str, float]] = {}

    def trained(self, round_index: int, metrics: dict[str, float]) -> None:
        headline = {key: metrics[key] for key in TUNE_METRICS if key in metrics}
        row = {"round": round_index, **headline, **trunk_distances(metrics, self.trunk_metrics)}
        if self.analysed:
            self.waiting[round_index] = row
        else:
            tune.report(row)

    def measured(self, landed: tuple[int, dict[str, float]] | None) -> None:
        """Reports the row of the round whose analysis `landed` (`RoundAnalysis.submit`/`wait`)."""
        if landed is None or landed[0] not in self.waiting:
            return
        round_index, analysis = landed
        row = self.waiting.pop(round_index)
        tune.report({**analysis, **row})


def lineage_trial(config: dict, shared: SharedObjects) -> None:
    """Runs the lineage of the trial's `TrialPayload` on the trunk and analysis pool in
    `shared`, from its last checkpoint when there is one."""
    payload = payload_of(shared, TrialConfig.of(config).lineage_id)
    spec = payload.lineage
    torch.set_num_threads(max(1, payload.threads))
    trunk = ray.get(shared.trunks[spec.trunk.id])
    logger = RunLogger(shared.tracking_uri, payload.run_id)
    record.set_tags(logger.client, payload.run_id, attempt_tags(payload))
    logger.log_start(trunk.metrics)
    analyst = None
    if shared.analysis is not None:
        analyst = RoundAnalysis(
            list(shared.analysis.actors), shared.analysis.references[spec.trunk.id], spec.model_dump(mode="json"),
            payload.run_id, slot=payload.slot,
        )
    rows = TuneRows(trunk.metrics, analysed=analyst is not None)
    try:
        run_lineage(
            spec, trunk, resume_from=resume_state(payload, shared.checkpoints, logger, analyst, rows),
            on_round=lambda result: report_round(payload, shared.checkpoints, result, logger, analyst, rows),
            validation_every=payload.validation_every, validation_images=payload.validation_images,
            tickets=ticket_exchange(shared, spec),
        )
        if analyst:
            rows.measured(analyst.wait())  # the run is complete only once its analyses are
    except DETERMINISTIC_FAILURES as error:
        # Retrying would fail the same way: record it, tell Tune, and end the trial without retries.
        message = f"{type(error).__name__}: {error}"
        logger.finish("FAILED", error=message)
        tune.report({"failed": message, **{key: float("nan") for key in trunk_distances(trunk.metrics, trunk.metrics)}})
        return
    except Exception as error:
        logger.finish("FAILED", error=f"{type(error).__name__}: {error}")
        raise
    logger.finish()


def ticket_exchange(shared: SharedObjects, spec) -> TicketExchange | None:
    """This lineage's side of the sweep's ticket board, when another lineage trains its ticket too."""
    if shared.tickets is None or ticket_id(spec) not in shared.tickets.tickets:
        return None
    return TicketExchange(shared.tickets.board, ticket_id(spec))


def attempt_tags(payload: TrialPayload) -> dict[str, str]:
    """Where this attempt runs: on a cluster, the first thing one asks about a failed lineage."""
    device = placement(resolve_device(payload.lineage.trunk.train.device))
    return {
        record.WORKER: f"{socket.gethostname()}:{os.getpid()}", record.NODE: ray.get_runtime_context().get_node_id(),
        record.DEVICE: device,
    }


def resume_state(
    payload: TrialPayload, experiment: str, logger: RunLogger, analyst: RoundAnalysis | None, rows: TuneRows
) -> LineageState | None:
    """The state after the lineage's last checkpointed round (this trial's before Tune restarted
    it, or one an earlier driver left), or None to start at round 1. The checkpointed round's
    analysis is submitted again: it may not have finished before the restart (the actor answers
    from MLflow if it had), and its Tune row, which waited for it, is reported when it lands."""
    found = latest_checkpoints(experiment, [payload.lineage_id]).get(payload.lineage_id)
    if found is None:
        return None
    location, round_index = found
    if not set(range(1, round_index + 1)) <= record.steps_with(logger.client, payload.run_id, record.ROUND_DONE):
        return None  # not this store's (a copied or reused folder; the driver said so in the run's notes)
    if payload.resume is not None and payload.resume.round == round_index:
        logger.note(None, [f"continued from the checkpoint of round {round_index} left by an earlier driver"])
    with tune.Checkpoint(location).as_directory() as directory:
        try:
            state, _ = load_state(directory)
        except CheckpointCorrupt as error:  # rounds replay identically; those in MLflow are not logged again
            logger.note(None, [f"{error}: not loaded, lineage restarted from round 1"])
            return None
        if analyst:
            rows.trained(state.round, record.batch_at(logger.client, payload.run_id, state.round, record.ROUND_DONE))
            analyst.submit(state.round, *load_evaluated(directory, state))
    return state


def report_round(
    payload: TrialPayload, experiment: str, result: RoundResult, logger: RunLogger, analyst: RoundAnalysis | None,
    rows: TuneRows,
) -> None:
    """MLflow first (masks, the round's ticket, metrics, notes, and the last round's ticket once
    more where runs made before every round's was kept had it), then the analysis (once the round
    before it is analysed), then the checkpoint, then Tune (the round before's row, now that its
    analysis landed, or this one's when none runs): a checkpointed round is always in MLflow."""
    round_index = result.state.round
    logger.log_round(
        round_index, result.metrics, result.state.masks, evaluated=result.evaluated, evaluated_masks=result.evaluated_masks
    )
    if result.notes:
        logger.note(round_index, result.notes)
    if round_index == payload.rounds:  # before the checkpoint that marks the lineage done
        logger.log_tensors(record.TICKET_WEIGHTS, result.evaluated)
        logger.log_tensors(record.TICKET_MASKS, result.evaluated_masks)
    landed = analyst.submit(round_index, result.evaluated, result.evaluated_masks) if analyst else None
    with tempfile.TemporaryDirectory() as directory:
        save_state(directory, result.state, evaluated=result.evaluated, evaluated_masks=result.evaluated_masks)
        save_checkpoint(experiment, payload.lineage_id, round_index, Path(directory))
    rows.measured(landed)
    rows.trained(round_index, result.metrics)
