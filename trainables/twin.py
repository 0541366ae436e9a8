"""The dense twin of a trunk: the instability-analysis control (Frankle et al. 2020, "Linear Mode
Connectivity and the Lottery Ticket Hypothesis") as the noise floor of the consistency metrics.

A lineage retrains with its trunk's seed, so its data order is the trunk's; another seed's trunk
differs in its init *and* its data order, and two such dense networks agree far less than a
sparse network must to count as "explaining itself the same way". The twin differs only in the
SGD noise: the same init (the same `torch.manual_seed(spec.seed)` draw of the weights), the same
recipe and data, another example order (and torch's generator, e.g. for dropout, reseeded), from
`twin_seed`. Measured against the trunk's analysis reference, what it scores (`twin/<metric>` on
the trunk's run) is how far SGD noise alone moves a dense network.

Frankle et al. branch the two copies at iteration k, where the lineages rewind to k > 0; this twin
branches at k = 0 (from init): the strictest consistency reference, the one that holds for every
lineage of the trunk, whatever its rewind point. Only its test accuracy and its consistency with
the trunk are kept; its weights are not stored.
"""
from __future__ import annotations

import hashlib

from lth_sweep.trainables.specs import TrunkSpec
from lth_sweep.trainables.trunk import TrunkResult, train_trunk

#: Salt of the twin's data-order seed: fixed, so a twin is a deterministic function of its trunk.
TWIN_SALT = "twin"


def twin_seed(seed: int) -> int:
    """The twin's data-order seed: a 32-bit hash of the trunk's seed and `TWIN_SALT`, so no trunk's
    twin shares its example order with another seed's trunk (seed + 1 would)."""
    digest = hashlib.sha256(f"{TWIN_SALT}:{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def twin_recipe(spec: TrunkSpec) -> TrunkSpec:
    """The trunk's spec, trained where the twin's task runs: `device: cuda` becomes `auto` (the twin
    runs on an analysis actor's resources, which may hold no GPU). Device is not part of what a
    spec computes (the fields `TrainSpec` marks out of its identity): numerics differ in rounding only."""
    if spec.train.device != "cuda":
        return spec
    return spec.model_copy(update={"train": spec.train.model_copy(update={"device": "auto"})})


def train_twin(spec: TrunkSpec) -> TrunkResult:
    """The dense twin of the trunk `spec`: its init, its recipe, another data order. No rewind
    snapshots and no early-stopping measure (only its final network is measured)."""
    return train_trunk(twin_recipe(spec), data_order_seed=twin_seed(spec.seed))
