"""Per-layer density distributions for methods that choose how sparse each layer is.

uniform: every layer at the same density. erk: Erdos-Renyi-Kernel (Evci et al. 2020, RigL),
density proportional to (sum of a layer's dimensions) / (product of them), with layers that would
exceed density 1 made dense and the rest rescaled so the overall density is exact.
"""
from __future__ import annotations

import math

import torch


def uniform(shapes: dict[str, torch.Size], density: float) -> dict[str, float]:
    return {name: density for name in shapes}


def erk(shapes: dict[str, torch.Size], density: float) -> dict[str, float]:
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / sizes[n] for n, s in shapes.items()}
    budget = density * sum(sizes.values())
    dense: set[str] = set()
    while True:
        rest = [n for n in shapes if n not in dense]
        scale = (budget - sum(sizes[n] for n in dense)) / sum(raw[n] * sizes[n] for n in rest)
        over = [n for n in rest if scale * raw[n] > 1]
        if not over:
            return {n: 1.0 if n in dense else scale * raw[n] for n in shapes}
        dense.update(over)


DISTRIBUTIONS = {"uniform": uniform, "erk": erk}


def kept_counts(shapes: dict[str, torch.Size], density: float, distribution: str) -> dict[str, int]:
    """Weights to keep per layer, rounded, at least one per layer."""
    densities = DISTRIBUTIONS[distribution](shapes, density)
    return {n: max(1, min(math.prod(s), round(densities[n] * math.prod(s)))) for n, s in shapes.items()}
