"""Frankle & Carbin's speed measure: the iteration at which validation loss is lowest.

A training callback evaluates the network every `every` iterations; the lineage reports the
iteration of minimum loss (`train/early_stop_iteration`) and the accuracy there
(`train/early_stop_acc`). The built-in datasets have no validation split, so the test split is
used; the measure only reads it, it never selects a network.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from trainables.data import make_generator
from trainables.training import evaluate


def early_stopping_iteration(history: Sequence[Sequence[float]]) -> int | None:
    """The iteration of minimum validation loss in (iteration, val_loss, ...) records; ties go to
    the earliest iteration, NaN losses are ignored, and no finite record gives None."""
    finite = [(float(r[1]), int(r[0])) for r in history if math.isfinite(float(r[1]))]
    return min(finite)[1] if finite else None


def validation_split(split, images: int | None):
    """The split the validation losses are taken on: all of `split`, or a fixed sample of `images`
    of it (the same for every lineage and round, whatever the seeds)."""
    if images is None or images >= len(split):
        return split
    order = torch.randperm(len(split), generator=make_generator(0, "early_stopping"))[:images]
    return split.subset(order.sort().values)


class ValidationTracker:
    """Training callback recording (iteration, val loss, val acc) every `every` optimizer steps;
    `iteration` counts completed steps from `start` (a lineage retraining from rewind iteration k
    passes start=k). Evaluation draws no random numbers, so tracking does not change training."""

    def __init__(self, model: nn.Module, split, every: int, start: int = 0):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.model, self.split, self.every = model, split, every
        self.iteration = start
        self.history: list[tuple[int, float, float]] = []

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        self.iteration += 1
        if self.iteration % self.every == 0:
            self.record()

    def record(self) -> tuple[int, float, float]:
        """Evaluates now (also callable by hand, e.g. before the first step)."""
        scores = evaluate(self.model, self.split)
        entry = (self.iteration, scores["loss"], scores["acc"])
        self.history.append(entry)
        return entry

    def early_stopping_iteration(self) -> int | None:
        return early_stopping_iteration(self.history)

    def metrics(self) -> dict[str, float]:
        best = self.early_stopping_iteration()
        if best is None:
            return {}
        acc = next(acc for iteration, _, acc in self.history if iteration == best)
        return {"train/early_stop_iteration": float(best), "train/early_stop_acc": acc}
