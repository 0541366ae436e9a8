"""The Ray Tune function trainable: one trial = one lineage.

Each round reports its metrics and a checkpoint (weights, masks, RNG state) so that a restarted
trial continues after its last finished round instead of starting over.
"""
from __future__ import annotations

import os
import socket
import tempfile

import ray
import torch
from ray import tune

from trainables.checkpoint import CheckpointCorrupt, load_evaluated, load_state, save_state
from trainables.device import placement, resolve_device
from trainables.lineage import LayerCollapseError, RoundResult, run_lineage
from trainables.round_analysis import AnalysisFailed, RoundAnalysis
from trainables.specs import LineageSpec
from trainables.run_logger import RunLogger
from trainables.training import DivergedError

DETERMINISTIC_FAILURES = (DivergedError, LayerCollapseError, AnalysisFailed)


def trunk_distances(metrics: dict[str, float], trunk_metrics: dict[str, float]) -> dict[str, float]:
    """For the optional scheduler (orchestrator/scheduler.py): how far this round is from its
    trunk, signed so that higher is better; keys missing on either side are left out."""
    out = {}
    if "test/acc" in metrics and "test/acc" in trunk_metrics:
        out["vs_trunk/test/acc"] = metrics["test/acc"] - trunk_metrics["test/acc"]
    if "test/loss" in metrics and "test/loss" in trunk_metrics:
        out["vs_trunk/test/loss"] = trunk_metrics["test/loss"] - metrics["test/loss"]
    return out


def lineage_trial(config: dict, trunks: dict, analysis: dict | None = None) -> None:
    """`config["trial"]` holds the lineage spec, its MLflow run id and the tracking URI;
    `trunks` maps trunk ids to object refs of their `TrunkResult`s; `analysis`, when on, holds
    the analysis actors' handles and each trunk's reference (object refs)."""
    config = config["trial"]
    spec = LineageSpec.model_validate(config["lineage"])
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    trunk = ray.get(trunks[spec.trunk.id])
    logger = RunLogger(config["tracking_uri"], config["run_id"])
    # Where this attempt runs: on a cluster, the first thing one asks about a failed lineage.
    logger.client.set_tag(config["run_id"], "lth.worker", f"{socket.gethostname()}:{os.getpid()}")
    logger.client.set_tag(config["run_id"], "lth.device", placement(resolve_device(spec.trunk.train.device)))

    analyst = None
    if analysis:
        analyst = RoundAnalysis(
            analysis["actors"], analysis["references"][spec.trunk.id], config["lineage"], config["run_id"],
            slot=config.get("slot", 0),
        )
    resume_from = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is None and config.get("resume_checkpoint"):  # left by a driver that died
        checkpoint = tune.Checkpoint(config["resume_checkpoint"])
        logger.note(None, [f"continued from the checkpoint of round {config['resume_round']} left by an earlier driver"])
    if checkpoint:
        with checkpoint.as_directory() as directory:
            try:
                resume_from, _ = load_state(directory)
            except CheckpointCorrupt as error:  # rounds replay identically; those in MLflow are not logged again
                logger.note(None, [f"{error}: not loaded, lineage restarted from round 1"])
            else:
                if analyst:  # the checkpointed round's analysis may not have finished before the restart
                    analyst.submit(resume_from.round, *load_evaluated(directory, resume_from))

    def report(result: RoundResult) -> None:
        round_index = result.state.round
        logger.log_round(round_index, result.metrics, result.state.masks)
        if result.notes:
            logger.note(round_index, result.notes)
        if round_index == spec.pruning.rounds:  # before the checkpoint that marks the lineage done
            logger.log_tensors("ticket/weights.safetensors", result.evaluated)
            logger.log_tensors("ticket/masks.safetensors", result.evaluated_masks)
        if analyst:
            analyst.submit(round_index, result.evaluated, result.evaluated_masks)
        with tempfile.TemporaryDirectory() as directory:
            save_state(directory, result.state, evaluated=result.evaluated, evaluated_masks=result.evaluated_masks)
            scored = {"round": round_index, **result.metrics, **trunk_distances(result.metrics, trunk.metrics)}
            tune.report(scored, checkpoint=tune.Checkpoint.from_directory(directory))

    try:
        run_lineage(
            spec, trunk, resume_from=resume_from, on_round=report, validation_every=config.get("validation_every", 0),
            validation_images=config.get("validation_images"),
        )
        if analyst:
            analyst.wait()  # the run is complete only once its analyses are
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
