"""The tools every dimension's measurement shares: the fixed samples, softmax outputs on the
model's device, and writing sampling errors. The network's model and masks are on the analysis
device (`analysis.device`); the samples stay on the CPU and each measurement moves its batches to
the model, returning CPU values."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lth_sweep.analysis import sampling_error
from lth_sweep.analysis.device import model_device
from lth_sweep.analysis.dimension import Reference
from lth_sweep.trainables.data import ImageSplit
from lth_sweep.trainables.masks import Masks
from lth_sweep.trainables.models import PrunableModel

CACHE_BYTES = 256 * 2**20  #: the most one cached input-only sample may take in an actor's memory


def sample(split: ImageSplit, count: int, seed: int, salt: str) -> ImageSplit:
    """The first `count` images of a seeded permutation: the same images for every round."""
    from lth_sweep.trainables.data import make_generator

    order = torch.randperm(len(split), generator=make_generator(seed, f"analysis/{salt}"))[: min(count, len(split))]
    order = order.sort().values
    return split.subset(order)


def metrics_sparsity(masks: Masks) -> float | None:
    total = sum(mask.numel() for mask in masks.values())
    return None if not total else 1 - sum(int(mask.sum()) for mask in masks.values()) / total


def trunk_units(dense: Reference | None, key: str, n: int):
    """The trunk's per-unit quantities behind `key` when measuring a round on the same `n` units;
    None on the trunk itself, or when the trunk has none (dimension off, older Reference)."""
    if dense is None or key not in dense.per_unit:
        return None
    units = dense.per_unit[key]
    return units if len(units[0] if isinstance(units, tuple) else units) == n else None


def put(metrics: dict, key: str, value: float) -> None:
    """Logs a sampling error unless it could not be estimated (NaN: fewer than two units)."""
    if value == value:
        metrics[key] = float(value)


def paired_se(metrics: dict, dense: Reference | None, key: str, values: torch.Tensor) -> None:
    """`se_diff/<key>`: the paired standard error of the mean of `values` minus the trunk's mean
    over the same units (McNemar's form for 0/1 values)."""
    reference = trunk_units(dense, key, len(values))
    if reference is not None:
        put(metrics, f"se_diff/{key}", sampling_error.paired_mean_se(values, reference))


@torch.no_grad()
def probabilities(model: PrunableModel, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Softmax outputs, computed on the model's device, returned on the CPU."""
    device = model_device(model)
    return torch.cat([
        F.softmax(model(images[i : i + batch_size].to(device)), 1).cpu() for i in range(0, len(images), batch_size)
    ])


def write_csv(path: Path, rows: list[dict]) -> None:
    """A table artifact (pandas: the same writer as the concepts table)."""
    import pandas as pd

    if rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(path, index=False, float_format="%.4f")
