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

from lth_sweep.trainables.device import Runtime, cpu_state, to_device
from lth_sweep.trainables.early_stopping import ValidationTracker, validation_split
from lth_sweep.trainables.masks import MaskKeeper, Masks, apply_masks, companion_masks, dense_masks, sparsity_report
from lth_sweep.trainables.pruning import PRUNING_METHODS
from lth_sweep.trainables.pruning.base import PruneContext
from lth_sweep.trainables.specs import LineageSpec
from lth_sweep.trainables.ticket_sharing import TicketExchange, has_control
from lth_sweep.trainables.training import evaluate, train
from lth_sweep.trainables.trunk import TrunkResult, as_tensors, build_for, cached_dataset

REINIT_SEED_OFFSET = 1_000_000_007
SHARED_TICKET_NOTE = "ticket shared: trained once for the sweep, by another lineage with the same ticket"



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
    # The network the metrics describe: the ticket itself or, under a control, its own network: a
    # fresh initialisation trained under the ticket's mask (reinit) or the rewound weights trained
    # under a per-layer permutation of it (shuffle). The lineage's state stays the ticket either way.
    evaluated: dict[str, torch.Tensor]
    notes: list[str] = field(default_factory=list)  # what the method wants the run to say
    evaluated_masks: Masks | None = None  # the masks `evaluated` trained under; None: state.masks

    def __post_init__(self):
        if self.evaluated_masks is None:
            self.evaluated_masks = self.state.masks


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
    """Control: each layer's mask permuted at random (same per-layer sparsity, random positions).
    Layers draw in name order, so masks read back from a checkpoint (in another order) shuffle alike."""
    out = {}
    for name in sorted(masks):
        flat = masks[name].flatten()
        out[name] = flat[torch.randperm(flat.numel(), generator=generator)].view_as(masks[name])
    return {name: out[name] for name in masks}


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
    return {name: mask.clone() for name, mask in masks.items()}


def _control_masks(pruning, masks: Masks, ctx: PruneContext) -> Masks:
    """The masks the reported network of a control trains under, from the ticket's (as it ended
    its training): a per-layer permutation (shuffle) or a copy (reinit). New tensors, so the
    ticket's masks, which the next round prunes from, stay as they are."""
    if pruning.shuffle:
        return shuffled(masks, ctx.generator(salt=1))
    return {name: mask.clone() for name, mask in masks.items()}


def run_lineage(
    spec: LineageSpec,
    trunk: TrunkResult,
    *,
    resume_from: LineageState | None = None,
    on_round: Callable[[RoundResult], None] = lambda result: None,
    validation_every: int = 0,
    validation_images: int | None = None,
    tickets: TicketExchange | None = None,
) -> list[RoundResult]:
    """Runs the rounds after `resume_from.round` (all of them by default).

    Masks come from the method (`trainables.pruning`), fed with the ticket's own history; with
    `reinit`, the reported network is a fresh initialisation trained under the same masks; with
    `shuffle`, the ticket's start trained under each layer's mask permuted (with both, a fresh
    initialisation under the permuted masks). The ticket itself trains every round regardless,
    since the next round prunes it.
    `validation_every` > 0 tracks the reported network's validation loss for the early-stopping
    iteration, on `validation_images` of the data's validation split (all of it by default; never
    the test split), and reports the test accuracy at the selected iteration.
    `tickets`: where a control takes each round's ticket when another lineage of the sweep trained
    it already, and leaves the ones it trains itself (`trainables.ticket_sharing`).
    """
    dataset = cached_dataset(spec.trunk.data)
    validation_set = validation_split(dataset, validation_images) if validation_every else None
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
    from_trained = pruning.retrain_from_trained_weights()
    callbacks = pruning.training_callbacks
    whole_filters = pruning.removes_output_channels
    controlled = has_control(spec)  # reports its own network, trained after the ticket
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
            tracker = ValidationTracker(model, validation_set, validation_every, pruning.rewind_iteration, dataset.test)
            return (*extra, tracker), tracker

        extra = callbacks(ctx, model, placed)
        extra, tracker = tracked(extra) if not controlled else (extra, None)
        shared = tickets.take(round_index) if tickets is not None and controlled else None
        if shared is None:
            ticket = _retrain(spec, model, dataset, start, placed, runtime, extra, whole_filters)
            if tickets is not None:
                tickets.leave(round_index, ticket, to_device(placed, torch.device("cpu")))
        else:  # the masks as the ticket's training left them (a dynamic method moves them)
            ticket, placed = shared.weights, to_device(shared.masks, runtime.device)
            ctx.notes.append(SHARED_TICKET_NOTE)
        evaluated, evaluated_masks = ticket, placed
        if controlled:  # its own masks: a dynamic method may move them during training
            control = _control_masks(pruning, to_device(placed, torch.device("cpu")), ctx)
            evaluated_masks = to_device(control, runtime.device)
            extra, tracker = tracked(callbacks(ctx, model, evaluated_masks))
            control_start = fresh if fresh is not None else start
            evaluated = _retrain(spec, model, dataset, control_start, evaluated_masks, runtime, extra, whole_filters)
        scores = evaluate(model, dataset.test, runtime=runtime)
        metrics = {"test/acc": scores["acc"], "test/loss": scores["loss"]}
        if tracker is not None:
            metrics |= tracker.metrics()
        shape_example = torch.ones(1, *dataset.test.image_shape)  # only its shape is read (file-backed splits hold no tensor)
        metrics |= sparsity_report(model, evaluated_masks, nominal=ctx.target, example=shape_example)
        metrics["time/round_seconds"] = time.perf_counter() - started
        state = LineageState(round_index, ticket, to_device(placed, torch.device("cpu")))  # as rigl left them
        result = RoundResult(
            state, metrics, evaluated, notes=ctx.notes, evaluated_masks=to_device(evaluated_masks, torch.device("cpu"))
        )
        on_round(result)
        results.append(result)
    return results
