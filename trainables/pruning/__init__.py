"""Pruning-method registry: one module per method, one line per method here.

A method maps (its spec, the trained weights of the last round, the current masks) to the next
masks. What happens around it (rewind, retrain, evaluate) is the lineage's job.
"""
from __future__ import annotations

from typing import Callable

import torch

from trainables.pruning import imp

PruneFn = Callable[..., dict[str, torch.Tensor]]

PRUNING_METHODS: dict[str, PruneFn] = {
    "imp": imp.next_masks,
}
