"""One lineage: prune -> rewind -> retrain -> evaluate, round after round, on top of a trunk.

Plain Python with no Ray and no MLflow: the Tune trial wraps it, and so does the benchmark's
in-process baseline, which is how orchestration overhead is measured.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from trainables.masks import MaskKeeper, Masks, apply_masks, dense_masks, sparsity_report
from trainables.pruning import PRUNING_METHODS
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


def fresh_initialisation(spec: LineageSpec) -> dict[str, torch.Tensor]:
    """A new draw of initial weights, independent of the trunk's (Frankle & Carbin's control)."""
    saved = torch.get_rng_state()
    torch.manual_seed(spec.trunk.seed + REINIT_SEED_OFFSET)
    fresh = build_for(spec.trunk, cached_dataset(spec.trunk.data))
    torch.set_rng_state(saved)
    return {k: v.detach().clone() for k, v in fresh.state_dict().items()}


def _retrain(spec: LineageSpec, model, dataset, start: dict[str, torch.Tensor], masks: Masks) -> dict[str, torch.Tensor]:
    model.load_state_dict(start)
    apply_masks(model, masks)
    train(
        model,
        dataset.train,
        spec.trunk.train,
        seed=spec.trunk.seed,
        start_iteration=spec.pruning.rewind_iteration,
        callbacks=(MaskKeeper(model, masks),),
    )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_lineage(
    spec: LineageSpec,
    trunk: TrunkResult,
    *,
    resume_from: LineageState | None = None,
    on_round: Callable[[RoundResult], None] = lambda result: None,
) -> list[RoundResult]:
    """Runs the rounds after `resume_from.round` (all of them by default).

    Masks always come from the ticket's own weights (rewound to the trunk, retrained); with
    `reinit`, the reported network is a fresh initialisation trained under those same masks.
    """
    dataset = cached_dataset(spec.trunk.data)
    model = build_for(spec.trunk, dataset)
    pruning = spec.pruning
    if resume_from is None:
        state = LineageState(0, as_tensors(trunk.final), dense_masks(model, model.pruned_weights(pruning.exclude)))
    else:
        state = resume_from
    rewound = as_tensors(trunk.rewind_state(pruning.rewind_iteration))
    fresh = fresh_initialisation(spec) if pruning.reinit else None
    prune = PRUNING_METHODS[pruning.method]
    results = []
    for round_index in range(state.round + 1, pruning.rounds + 1):
        started = time.perf_counter()
        masks = prune(spec=pruning, weights=state.weights, masks=state.masks)
        ticket = _retrain(spec, model, dataset, rewound, masks)
        evaluated = ticket if fresh is None else _retrain(spec, model, dataset, fresh, masks)
        scores = evaluate(model, dataset.test)
        metrics = {"test/acc": scores["acc"], "test/loss": scores["loss"]}
        metrics |= sparsity_report(model, masks, nominal=1 - (1 - pruning.rate) ** round_index)
        metrics["time/round_seconds"] = time.perf_counter() - started
        state = LineageState(round_index, ticket, masks)
        result = RoundResult(state, metrics, evaluated)
        on_round(result)
        results.append(result)
    return results
