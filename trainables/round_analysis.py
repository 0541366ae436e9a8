"""Handing each round's network to the analysis actors without waiting for the result.

One round is in flight at a time: round r's analysis runs while round r + 1 trains, and round r + 1
is submitted (and checkpointed) only once round r's analysis is done. So a checkpoint of round r
means every earlier round is analysed, and a restarted trial only has to re-submit round r itself
(the actor answers from MLflow if that one had finished too). The trial never imports the analysis
package: it only calls `analyze.remote` on the handles the driver gave it.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import ray
import torch


class RoundAnalyst(Protocol):
    """What a trial asks of an analysis actor, by keyword (`analysis/actors.py`'s AnalysisActor
    implements it; tests/unit/test_layers.py holds the two signatures equal): measure round
    `round_index` of `lineage` (its spec, as JSON) against its trunk's `reference`, log the metrics
    to the lineage's run `run_id`, return them (those the run holds when it was measured already)."""

    def analyze(
        self, *, lineage: dict, reference: object, round_index: int, weights: dict[str, np.ndarray],
        masks: dict[str, np.ndarray], run_id: str,
    ) -> dict[str, float]: ...


class AnalysisFailed(RuntimeError):
    """An analysis of a round raised; retrying the trial would fail the same way."""


class RoundAnalysis:
    def __init__(self, actors: list, reference, lineage: dict, run_id: str, slot: int = 0):
        self.actors, self.reference, self.lineage, self.run_id, self.slot = actors, reference, lineage, run_id, slot
        self.pending: tuple[int, ray.ObjectRef] | None = None

    def submit(
        self, round_index: int, weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
    ) -> tuple[int, dict[str, float]] | None:
        """Hands round `round_index` to an actor once the round before it is analysed; returns
        that one's (round, metrics), None when none was in flight."""
        landed = self.wait()
        actor = self.actors[(self.slot + round_index) % len(self.actors)]
        arrays = {name: tensor.detach().cpu().numpy() for name, tensor in weights.items()}
        mask_arrays = {name: mask.cpu().numpy() for name, mask in masks.items()}
        ref = actor.analyze.remote(
            lineage=self.lineage, reference=self.reference, round_index=round_index, weights=arrays, masks=mask_arrays,
            run_id=self.run_id,
        )
        self.pending = (round_index, ref)
        return landed

    def wait(self) -> tuple[int, dict[str, float]] | None:
        """The round in flight's (round, metrics) once analysed; None when none is in flight."""
        if self.pending is None:
            return None
        round_index, ref = self.pending
        self.pending = None
        try:
            return round_index, ray.get(ref)
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if getattr(error, "cause", None) is not None else error
            raise AnalysisFailed(f"analysis of round {round_index} failed: {type(cause).__name__}: {cause}") from None
