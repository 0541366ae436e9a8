"""Tiny real things: a trunk and lineages that train in well under a second (16 px shapes, a narrow
Conv-2, one epoch), the small models the pruning tests use, and a PruneContext around a model."""
from __future__ import annotations

import torch

from lth_sweep.trainables.data import ImageSplit
from lth_sweep.trainables.models import build_model
from lth_sweep.trainables.pruning.base import PruneContext
from lth_sweep.trainables.specs import DataSpec, LineageSpec, ModelSpec, TrainSpec, TrunkSpec

#: The rewind iteration of the trained tiny trunk's snapshot (the `trained_trunk` fixture).
REWIND = 3


def tiny_trunk(seed: int = 0, **train) -> TrunkSpec:
    """A trunk that trains in well under a second: 16 px shapes, a narrow Conv-2, one epoch."""
    return TrunkSpec(
        data=DataSpec(image_size=16, train_size=256, test_size=128, ood_size=0),
        model=ModelSpec(name="conv2", width=4),
        train=TrainSpec(**{"epochs": 1, "batch_size": 32, "lr": 0.01, **train}),
        seed=seed,
    )


def tiny_lineage(seed: int = 0, train: dict | None = None, **pruning) -> LineageSpec:
    pruning = {"method": "imp", "rate": 0.5, "rounds": 2, **pruning}
    return LineageSpec(trunk=tiny_trunk(seed, **(train or {})), pruning=pruning)


def shapes_model(name: str = "conv2", width: int | None = 4, seed: int | None = None):
    """Model `name` for the built-in shapes data (RGB, 16 px, 9 classes); initialised after
    `torch.manual_seed(seed)` when a seed is given."""
    if seed is not None:
        torch.manual_seed(seed)
    return build_model(ModelSpec(name=name, width=width), in_channels=3, image_size=16, num_classes=9)


def state_of(model) -> dict[str, torch.Tensor]:
    """A detached copy of the model's state dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def prune_context(spec, model, round_index: int = 1, *, masks=None, trained=None, dense=None, start=None, data=None,
                  target: float | None = None, seed: int = 0, **options) -> PruneContext:
    """What a pruning method sees in round `round_index` of `spec`. By default: every prunable
    weight of `model` kept, the model's current weights standing for the trained, dense and start
    ones, 8 random images (drawn from torch's global generator) of class 0, and the round's target
    sparsity. `options`: further PruneContext fields (`total_iterations`, ...)."""
    weights = state_of(model)
    masks = masks or {name: torch.ones_like(weights[name], dtype=torch.bool) for name in model.pruned_weights()}
    return PruneContext(
        spec=spec, round=round_index, target=spec.target_sparsity(round_index) if target is None else target,
        masks=masks, trained=weights if trained is None else trained, dense=weights if dense is None else dense,
        start=weights if start is None else start, model=model, seed=seed,
        data=ImageSplit(torch.randn(8, 3, 16, 16), torch.zeros(8, dtype=torch.long)) if data is None else data,
        **options,
    )
