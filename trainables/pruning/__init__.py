"""Pruning-method registry: one module per method, one line per method here.

Each module declares its options (`Spec`) and how it picks the next masks (`next_masks`); see
`trainables/pruning/base.py` for the contract. The lineage does the rest (rewind, retrain,
evaluate, controls).
"""
from __future__ import annotations

from types import ModuleType
from typing import Annotated, Union

from pydantic import Field

from lth_sweep.trainables.pruning import channel_in, filter_pruning, grasp, imp, omp, random_pruning, rigl, snip, synflow

PRUNING_METHODS: dict[str, ModuleType] = {
    "imp": imp,
    "omp": omp,
    "random": random_pruning,
    "snip": snip,
    "grasp": grasp,
    "synflow": synflow,
    "rigl": rigl,
    "filter": filter_pruning,
    "channel_in": channel_in,
}

# The `pruning` section of a lineage: one of the methods' specs, picked by its `method` field.
AnyPruneSpec = Annotated[Union[tuple(m.Spec for m in PRUNING_METHODS.values())], Field(discriminator="method")]
