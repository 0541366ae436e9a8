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
    weights: dict[str, torch.Tensor]
    masks: Masks


@dataclass
class RoundResult:
    state: LineageState
    metrics: dict[str, float]


def rewind_weights(spec: LineageSpec, trunk: TrunkResult, model) -> dict[str, torch.Tensor]:
    if spec.pruning.reinit:
        # Control: the same mask on a fresh draw of weights (Frankle & Carbin's random reinit).
        torch.manual_seed(spec.trunk.seed + REINIT_SEED_OFFSET)
        fresh = build_for(spec.trunk, cached_dataset(spec.trunk.data))
        return {k: v.detach().clone() for k, v in fresh.state_dict().items()}
    return as_tensors(trunk.rewind_state(spec.pruning.rewind_iteration))


def run_lineage(
    spec: LineageSpec,
    trunk: TrunkResult,
    *,
    resume_from: LineageState | None = None,
    on_round: Callable[[RoundResult], None] = lambda result: None,
) -> list[RoundResult]:
    dataset = cached_dataset(spec.trunk.data)
    model = build_for(spec.trunk, dataset)
    pruning = spec.pruning
    if resume_from is None:
        state = LineageState(0, as_tensors(trunk.final), dense_masks(model, model.pruned_weights(pruning.exclude)))
    else:
        state = resume_from
    start = rewind_weights(spec, trunk, model)
    prune = PRUNING_METHODS[pruning.method]
    results = []
    for round_index in range(state.round + 1, pruning.rounds + 1):
        started = time.perf_counter()
        masks = prune(spec=pruning, weights=state.weights, masks=state.masks)
        model.load_state_dict(start)
        apply_masks(model, masks)
        train(
            model,
            dataset.train,
            spec.trunk.train,
            seed=spec.trunk.seed,
            start_iteration=pruning.rewind_iteration,
            callbacks=(MaskKeeper(model, masks),),
        )
        scores = evaluate(model, dataset.test)
        metrics = {"test/acc": scores["acc"], "test/loss": scores["loss"]}
        metrics |= sparsity_report(model, masks, nominal=1 - (1 - pruning.rate) ** round_index)
        metrics["time/round_seconds"] = time.perf_counter() - started
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        state = LineageState(round_index, weights, masks)
        result = RoundResult(state, metrics)
        on_round(result)
        results.append(result)
    return results
