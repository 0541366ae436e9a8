"""Frankle & Carbin's speed measure: the early-stopping iteration, the iteration of minimum
validation loss (Frankle & Carbin 2019, Sec. 2 and Figures 3-5: winning tickets "learn faster",
reaching it in at most as many iterations as the dense network). The trunk measures it too, so a
lineage's value has its dense reference (`dense/train/early_stop_iteration` in `lth query`).

Selection and report never share images. Validation losses are taken every `every` iterations on
the dataset's validation split (`Dataset.validation`, sized by `data.validation_size`): for
`shapes` a split generated apart from train and test, for every other dataset a fixed part of
train (drawn from the data seed) held out of training. The accuracy reported is the TEST accuracy
of the network at the selected iteration: the tracker keeps a copy of the weights at the best
validation loss so far and evaluates that copy on the test split once, after training.

Metrics (step 0 on the trunk's run, the round on a lineage's):
- `train/early_stop_saturated`: 1 when the minimum lies at the first or the last evaluation (or
  there is a single one), 0 otherwise. At the last, the loss was still falling when training
  ended; at the first, it may have been lowest before it. Either way the iteration says where
  the evaluations stopped, not when the network stopped learning.
- `train/early_stop_iteration`: the iteration of minimum validation loss; left out when saturated.
- `train/early_stop_acc`: test accuracy at the selected iteration (also when saturated).
- `train/early_stop_every`: the iterations between evaluations, the resolution of the iteration
  (the verdicts' allowance when comparing a ticket's iteration with dense).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from lth_sweep.trainables.data import make_generator
from lth_sweep.trainables.training import evaluate


def early_stopping_iteration(history: Sequence[Sequence[float]]) -> int | None:
    """The iteration of minimum validation loss in (iteration, val_loss, ...) records; ties go to
    the earliest iteration, NaN losses are ignored, and no finite record gives None."""
    finite = [(float(r[1]), int(r[0])) for r in history if math.isfinite(float(r[1]))]
    return min(finite)[1] if finite else None


def is_saturated(history: Sequence[Sequence[float]], best: int) -> bool:
    """Whether the minimum at iteration `best` is at the first or the last evaluation."""
    return best in (int(history[0][0]), int(history[-1][0]))


def validation_split(dataset, images: int | None = None):
    """The split the validation losses are taken on: the dataset's validation split (never its
    test split), or a fixed sample of `images` of it (the same for every lineage and round)."""
    split = dataset.validation
    if split is None:
        raise ValueError(
            "the early-stopping iteration needs a validation split, and the data has none: set "
            "data.validation_size > 0 (a sweep sets it from analysis.early_stopping_images), with at "
            "least 10 training images where it is held out of train"
        )
    if images is None or images >= len(split):
        return split
    order = torch.randperm(len(split), generator=make_generator(0, "early_stopping"))[:images]
    return split.subset(order.sort().values)


def _copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


class ValidationTracker:
    """Training callback recording (iteration, val loss, val acc) every `every` optimizer steps;
    `iteration` counts completed steps from `start` (a lineage retraining from rewind iteration k
    passes start=k). Evaluation draws no random numbers, so tracking does not change training.
    With a `test` split it keeps the weights of the best validation loss so far (one copy of the
    model) for the test accuracy of `metrics`."""

    def __init__(self, model: nn.Module, split, every: int, start: int = 0, test=None):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.model, self.split, self.every, self.test = model, split, every, test
        self.iteration = start
        self.history: list[tuple[int, float, float]] = []
        self.best_weights: dict[str, torch.Tensor] | None = None

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
        if self.test is not None and self.early_stopping_iteration() == self.iteration:
            self.best_weights = _copy(self.model)
        return entry

    def early_stopping_iteration(self) -> int | None:
        return early_stopping_iteration(self.history)

    def test_accuracy_at_best(self) -> float:
        """Test accuracy of the weights kept at the best validation loss; the model is left as it was."""
        current = _copy(self.model)
        self.model.load_state_dict(self.best_weights)
        try:
            return evaluate(self.model, self.test)["acc"]
        finally:
            self.model.load_state_dict(current)

    def metrics(self) -> dict[str, float]:
        """The keys of the module docstring (none without a finite validation loss)."""
        best = self.early_stopping_iteration()
        if best is None:
            return {}
        saturated = is_saturated(self.history, best)
        out = {"train/early_stop_saturated": float(saturated), "train/early_stop_every": float(self.every)}
        if not saturated:
            out["train/early_stop_iteration"] = float(best)
        if self.test is not None:
            out["train/early_stop_acc"] = self.test_accuracy_at_best()
        return out
