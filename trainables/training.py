"""The training loop, kept short: the schedule is counted in iterations (so a lineage can resume
training at the rewind iteration k and replay the trunk's schedule from there) and everything else
hangs off callbacks. Where it runs (device, precision, memory layout, data loading) is the
`Runtime`'s business (`trainables.device`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from lth_sweep.trainables.data import Split
from lth_sweep.trainables.device import Runtime


class Callback(Protocol):
    def before_step(self) -> None: ...
    def after_step(self) -> None: ...


class DivergedError(RuntimeError):
    """Training produced a non-finite loss; the run is stopped instead of logging garbage."""


def make_optimizer(model: nn.Module, spec) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)


def learning_rate(spec, iteration: int, total: int, per_epoch: int = 1) -> float:
    scale = 1.0
    if spec.warmup_iterations and iteration < spec.warmup_iterations:
        scale = (iteration + 1) / spec.warmup_iterations
    if spec.schedule == "cosine":
        scale *= 0.5 * (1 + math.cos(math.pi * iteration / total))
    elif spec.schedule == "exponential":  # torch's ExponentialLR stepped once per epoch
        scale *= spec.gamma ** (iteration // per_epoch)
    return spec.lr * scale


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The example order of one epoch: a function of (seed, epoch) only, so replays agree."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(size, generator=generator)


_epoch_order = lru_cache(maxsize=2)(epoch_order)  # every batch of an epoch reads the same order


def batch_indices(size: int, batch_size: int, seed: int, iteration: int) -> torch.Tensor:
    """The examples of training iteration `iteration`."""
    epoch, step = divmod(iteration, math.ceil(size / batch_size))
    return _epoch_order(size, seed, epoch)[step * batch_size : (step + 1) * batch_size]


@dataclass(frozen=True)
class BatchPlan:
    """The example indices of each iteration in `iterations`, computed on demand (loader workers
    compute their own, so nothing large is shipped to them)."""

    size: int
    batch_size: int
    seed: int
    iterations: range

    def __len__(self) -> int:
        return len(self.iterations)

    def __getitem__(self, item: int) -> torch.Tensor:
        return batch_indices(self.size, self.batch_size, self.seed, self.iterations[item])


def train(
    model: nn.Module,
    data: Split,
    spec,
    *,
    seed: int,
    start_iteration: int = 0,
    stop_iteration: int | None = None,
    callbacks: tuple[Callback, ...] = (),
    on_iteration=None,
    runtime: Runtime | None = None,
) -> None:
    """Trains from `start_iteration` to the end of the schedule (or `stop_iteration`).

    The model is moved to the runtime's device (`Runtime.of(spec)` by default) and stays there.
    `on_iteration(i)` is called before iteration i runs (and once after the last), which is where
    a trunk takes its rewind snapshots. `seed` fixes the example order (`epoch_order`): a trunk's
    and its lineages' is the trunk's seed, its dense twin's another (`trainables.twin`).
    """
    runtime = runtime or Runtime.of(spec)
    runtime.place(model)
    per_epoch = spec.iterations_per_epoch(len(data))
    total = spec.epochs * per_epoch
    stop = total if stop_iteration is None else stop_iteration
    optimizer = make_optimizer(model, spec)
    model.train()
    batches = runtime.batches(data, BatchPlan(len(data), spec.batch_size, seed, range(start_iteration, stop)))
    for iteration in range(start_iteration, stop):
        if on_iteration:
            on_iteration(iteration)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(spec, iteration, total, per_epoch)
        images, labels = next(batches)
        with runtime.autocast():
            loss = F.cross_entropy(model(images).float(), labels)
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
def evaluate(model: nn.Module, data: Split, batch_size: int = 1000, runtime: Runtime | None = None) -> dict[str, float]:
    """Loss and accuracy on `data`, wherever the model is (fp32 unless the runtime says bf16)."""
    device = next(model.parameters()).device
    runtime = runtime or Runtime(device=device)
    model.eval()
    loss = correct = 0.0
    picks = [slice(start, start + batch_size) for start in range(0, len(data), batch_size)]
    for images, labels in runtime.batches(data, picks):
        with runtime.autocast():
            logits = model(images).float()
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
    model.train()
    return {"loss": loss / len(data), "acc": correct / len(data)}
