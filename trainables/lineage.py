"""One lineage: prune -> rewind -> retrain -> evaluate, round after round, on top of a trunk.

Plain Python with no Ray and no MLflow: the Tune trial wraps it, and so does the benchmark's
in-process baseline, which is how orchestration overhead is measured.

The network trains on the spec's device (`trainables.device`); masks are chosen on the CPU, by a
spare CPU model, so a config gives bit-identical masks whatever the device of its training, and
travel to the device for retraining only. Everything a round returns is on the CPU.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from trainables.device import Runtime, cpu_state, to_device
from trainables.early_stopping import ValidationTracker, validation_split
from trainables.masks import MaskKeeper, Masks, apply_masks, companion_masks, dense_masks, sparsity_report
from trainables.pruning import PRUNING_METHODS
from trainables.pruning.base import PruneContext
from trainables.specs import LineageSpec
from trainables.training import evaluate, train
from trainables.trunk import TrunkResult, as_tensors, build_for, cached_dataset

REINIT_SEED_OFFSET = 1_000_000_007



@dataclass
class LineageState:
    """Everything needed to continue a lineage after `round` finished."""

    round: int
    weights: dict[str, torch.Tensor]  # the ticket's trained weights: the next round prunes these
    masks: Masks


@dataclass
class RoundResult:
    state: LineageState
    metrics: dict[str, float]
    # The network the metrics describe: the ticket itself or, for the random-reinit control, a
    # fresh initialisation trained under the ticket's mask.
    evaluated: dict[str, torch.Tensor]
    notes: list[str] = field(default_factory=list)  # what the method wants the run to say


def fresh_initialisation(spec: LineageSpec) -> dict[str, torch.Tensor]:
    """A new draw of initial weights, independent of the trunk's (Frankle & Carbin's control)."""
    saved = torch.get_rng_state()
    torch.manual_seed(spec.trunk.seed + REINIT_SEED_OFFSET)
    fresh = build_for(spec.trunk, cached_dataset(spec.trunk.data))
    torch.set_rng_state(saved)
    return {k: v.detach().clone() for k, v in fresh.state_dict().items()}


class LayerCollapseError(RuntimeError):
    """A method emptied a layer and the config does not allow it."""


def shuffled(masks: Masks, generator: torch.Generator) -> Masks:
    """Control: each layer's mask permuted at random (same per-layer sparsity, random positions)."""
    out = {}
    for name, mask in masks.items():
        flat = mask.flatten()
        out[name] = flat[torch.randperm(flat.numel(), generator=generator)].view_as(mask)
    return out


def _retrain(
    spec: LineageSpec, model, dataset, start, masks: Masks, runtime: Runtime, extra_callbacks=(),
    whole_filters: bool = False,
) -> dict[str, torch.Tensor]:
    """Trains `model` from `start` under `masks` (both on the runtime's device); callbacks run
    before the mask keeper. Returns the trained weights, on the CPU."""
    model.load_state_dict(start)
    if whole_filters:
        masks = {**masks, **companion_masks(model, masks)}
    apply_masks(model, masks)
    train(
        model,
        dataset.train,
        spec.trunk.train,
        seed=spec.trunk.seed,
        start_iteration=spec.pruning.rewind_iteration,
        callbacks=(*extra_callbacks, MaskKeeper(model, masks)),
        runtime=runtime,
    )
    return cpu_state(model)


def _next_masks(spec: LineageSpec, method, ctx: PruneContext) -> Masks:
    masks = method.next_masks(ctx)
    pruning = spec.pruning
    empty = [name for name, mask in masks.items() if not mask.any()]
    if empty and not pruning.allow_layer_collapse:
        raise LayerCollapseError(
            f"round {ctx.round}: {pruning.method} removed every weight of {', '.join(empty)}; "
            "set pruning.allow_layer_collapse=true to allow it, or exclude those layers"
        )
    if pruning.shuffle:
        masks = shuffled(masks, ctx.generator(salt=1))
    return {name: mask.clone() for name, mask in masks.items()}


def run_lineage(
    spec: LineageSpec,
    trunk: TrunkResult,
    *,
    resume_from: LineageState | None = None,
    on_round: Callable[[RoundResult], None] = lambda result: None,
    validation_every: int = 0,
    validation_images: int | None = None,
) -> list[RoundResult]:
    """Runs the rounds after `resume_from.round` (all of them by default).

    Masks come from the method (`trainables.pruning`), fed with the ticket's own history; with
    `reinit`, the reported network is a fresh initialisation trained under the same masks.
    `validation_every` > 0 tracks the reported network's validation loss for the early-stopping
    iteration, on `validation_images` of the test split (all of it by default).
    """
    dataset = cached_dataset(spec.trunk.data)
    validation_set = validation_split(dataset.test, validation_images) if validation_every else None
    runtime = Runtime.of(spec.trunk.train)
    model = runtime.place(build_for(spec.trunk, dataset))
    scorer = build_for(spec.trunk, dataset)  # a spare model methods may score with; stays on the CPU
    pruning = spec.pruning
    method = PRUNING_METHODS[pruning.method]
    dense = as_tensors(trunk.final)
    if resume_from is None:
        state = LineageState(0, dense, dense_masks(scorer, scorer.pruned_weights(pruning.exclude)))
    else:
        state = resume_from
    rewound = as_tensors(trunk.rewind_state(pruning.rewind_iteration))
    fresh = fresh_initialisation(spec) if pruning.reinit else None
    from_trained = getattr(method, "retrain_from_trained_weights", lambda spec: False)(pruning)
    callbacks = getattr(method, "training_callbacks", lambda ctx, model, masks: ())
    whole_filters = getattr(method, "REMOVES_OUTPUT_CHANNELS", False)
    results = []
    for round_index in range(state.round + 1, pruning.rounds + 1):
        started = time.perf_counter()
        ctx = PruneContext(
            spec=pruning, round=round_index, target=pruning.target_sparsity(round_index), masks=state.masks,
            trained=state.weights, dense=dense, start=rewound, model=scorer, data=dataset.train,
            seed=spec.trunk.seed, total_iterations=spec.trunk.total_iterations(),
        )
        masks = _next_masks(spec, method, ctx)
        placed = to_device(masks, runtime.device)  # on the CPU: the same tensors
        start = state.weights if from_trained else rewound
        def tracked(extra):
            if not validation_every:
                return extra, None
            tracker = ValidationTracker(model, validation_set, validation_every, pruning.rewind_iteration)
            return (*extra, tracker), tracker

        extra = callbacks(ctx, model, placed)
        extra, tracker = tracked(extra) if fresh is None else (extra, None)
        ticket = _retrain(spec, model, dataset, start, placed, runtime, extra, whole_filters)
        evaluated, evaluated_masks = ticket, placed
        if fresh is not None:  # its own copy: a dynamic method may move the masks during training
            evaluated_masks = {name: mask.clone() for name, mask in placed.items()}
            extra, tracker = tracked(callbacks(ctx, model, evaluated_masks))
            evaluated = _retrain(spec, model, dataset, fresh, evaluated_masks, runtime, extra, whole_filters)
        scores = evaluate(model, dataset.test, runtime=runtime)
        metrics = {"test/acc": scores["acc"], "test/loss": scores["loss"]}
        if tracker is not None:
            metrics |= tracker.metrics()
        metrics |= sparsity_report(model, evaluated_masks, nominal=ctx.target)
        metrics["time/round_seconds"] = time.perf_counter() - started
        state = LineageState(round_index, ticket, to_device(placed, torch.device("cpu")))  # as rigl left them
        result = RoundResult(state, metrics, evaluated, notes=ctx.notes)
        on_round(result)
        results.append(result)
    return results
