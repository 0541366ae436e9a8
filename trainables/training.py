"""The training loop, kept short: the schedule is counted in iterations (so a lineage can resume
training at the rewind iteration k and replay the trunk's schedule from there) and everything else
hangs off callbacks."""
from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from trainables.data import ImageSplit


class Callback(Protocol):
    def before_step(self) -> None: ...
    def after_step(self) -> None: ...


class DivergedError(RuntimeError):
    """Training produced a non-finite loss; the run is stopped instead of logging garbage."""


def make_optimizer(model: nn.Module, spec) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)


def learning_rate(spec, iteration: int, total: int) -> float:
    scale = 1.0
    if spec.warmup_iterations and iteration < spec.warmup_iterations:
        scale = (iteration + 1) / spec.warmup_iterations
    if spec.schedule == "cosine":
        scale *= 0.5 * (1 + math.cos(math.pi * iteration / total))
    return spec.lr * scale


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The example order of one epoch: a function of (seed, epoch) only, so replays agree."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(size, generator=generator)


def train(
    model: nn.Module,
    data: ImageSplit,
    spec,
    *,
    seed: int,
    start_iteration: int = 0,
    stop_iteration: int | None = None,
    callbacks: tuple[Callback, ...] = (),
    on_iteration=None,
) -> None:
    """Trains from `start_iteration` to the end of the schedule (or `stop_iteration`).

    `on_iteration(i)` is called before iteration i runs (and once after the last), which is where
    a trunk takes its rewind snapshots.
    """
    per_epoch = spec.iterations_per_epoch(len(data))
    total = spec.epochs * per_epoch
    stop = total if stop_iteration is None else stop_iteration
    optimizer = make_optimizer(model, spec)
    model.train()
    order = None
    for iteration in range(start_iteration, stop):
        epoch, step = divmod(iteration, per_epoch)
        if order is None or step == 0:
            order = epoch_order(len(data), seed, epoch)
        if on_iteration:
            on_iteration(iteration)
        batch = order[step * spec.batch_size : (step + 1) * spec.batch_size]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(spec, iteration, total)
        images, labels = data.batch(batch)
        loss = F.cross_entropy(model(images), labels)
        if not torch.isfinite(loss):
            raise DivergedError(f"training diverged at iteration {iteration}: loss is {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for callback in callbacks:
            callback.before_step()
        optimizer.step()
        for callback in callbacks:
            callback.after_step()
    if on_iteration:
        on_iteration(stop)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageSplit, batch_size: int = 1000) -> dict[str, float]:
    model.eval()
    loss = correct = 0.0
    for start in range(0, len(data), batch_size):
        images, labels = data.batch(slice(start, start + batch_size))
        logits = model(images)
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
    model.train()
    return {"loss": loss / len(data), "acc": correct / len(data)}
