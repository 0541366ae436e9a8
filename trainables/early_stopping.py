"""Frankle & Carbin's speed measure: the iteration at which validation loss is lowest.

A training callback evaluates the network every `every` iterations; the lineage reports the
iteration of minimum loss (`train/early_stop_iteration`) and the accuracy there
(`train/early_stop_acc`). The built-in datasets have no validation split, so the test split is
used; the measure only reads it, it never selects a network.
"""
from __future__ import annotations

from torch import nn

from trainables.data import ImageSplit
from trainables.training import evaluate


class ValidationTracker:
    def __init__(self, model: nn.Module, split: ImageSplit, every: int, start_iteration: int = 0):
        self.model, self.split, self.every = model, split, every
        self.iteration = start_iteration
        self.history: list[tuple[int, float, float]] = []  # (iteration, loss, acc)

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        self.iteration += 1
        if self.iteration % self.every == 0:
            scores = evaluate(self.model, self.split)
            self.history.append((self.iteration, scores["loss"], scores["acc"]))

    def metrics(self) -> dict[str, float]:
        if not self.history:
            return {}
        iteration, _, acc = min(self.history, key=lambda entry: (entry[1], entry[0]))
        return {"train/early_stop_iteration": float(iteration), "train/early_stop_acc": acc}
