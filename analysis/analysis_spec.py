"""What the analysis of a round measures, as the `analysis` section of a sweep config.

Every measurement compares a round's network with its dense trunk on fixed, seeded samples of the
dataset, so two rounds (and two lineages) are always measured on the same images. The spec is part
of the sweep's identity (not of a lineage's training identity): changing it makes a new sweep.
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, create_model, field_validator

from lth_sweep.analysis.dimension import Dimension
from lth_sweep.analysis.dimensions import DIMENSIONS
from lth_sweep.trainables.canonical import Spec
from lth_sweep.trainables.identity import OmittedWhen, OutOfIdentity

POOL = "how the pool runs, not what it measures"


class AnalysisSettings(Spec):
    """The section's own fields; `AnalysisSpec` adds one per dimension."""

    enabled: bool = True
    # How the pool runs, not what it measures: resizing it reuses the sweep's finished runs. In the
    # identity they take their defaults' place (not dropped), so ids from before this rule still hold.
    actors: Annotated[int, OutOfIdentity(POOL, stands_as=1)] = Field(1, ge=1, description="analysis actors in the pool")
    cpus_per_actor: Annotated[float, OutOfIdentity(POOL, stands_as=0.0)] = Field(
        0.0, ge=0, description="CPUs Ray reserves per actor; 0 shares the trials' cores (right for a laptop)"
    )
    gpus_per_actor: Annotated[float, OutOfIdentity("where it measures, not what (added after ids existed)")] = Field(
        0.0, ge=0,
        description="GPUs Ray reserves per actor (fractions share one: 0.25 puts four actors on a GPU); an actor "
        "measures on CUDA when Ray gave it a GPU and torch sees one, else on the CPU, as training's device: auto",
    )
    seed: int = Field(0, description="seed of the analysis samples, the same for every round")
    early_stopping_every: int = Field(
        100, ge=0,
        description="iterations between validation losses for the early-stopping iteration (0: off); "
        "Frankle & Carbin validate every 100",
    )
    early_stopping_images: int | None = Field(
        None, ge=10,
        description="size of the validation split those losses are taken on, when data.validation_size is not set: "
        "generated apart for shapes and clutter, held out of train (at most 10%) otherwise; never the test split (None: the test split's size)",
    )
    # The dense twin adds trunk-level reference metrics (`twin/...` on the trunks' runs) and no
    # lineage's result depends on it: turning it off or on keeps the sweep, its runs and their ids
    # (a resumed sweep adds the twins it lacks).
    twin: Annotated[bool, OutOfIdentity("reference metrics of the trunks only")] = Field(
        True,
        description="train each trunk's dense twin (same init, another data order: Frankle et al. 2020's instability "
        "control) and log its consistency with the trunk as twin/<metric> on the trunk's run: the noise floor of "
        "SGD noise alone; costs one dense training and one measurement per trunk",
    )
    @field_validator("gpus_per_actor")
    @classmethod
    def _one_device(cls, gpus: float) -> float:
        if gpus > 1:
            raise ValueError(
                f"{gpus:g} GPUs per actor, but an actor measures on one device: at most 1 "
                "(a fraction shares a GPU between actors, e.g. 0.25)"
            )
        return gpus


def dimension_field(name: str, dimension: Dimension) -> tuple:
    """`analysis.<name>`: the dimension's options, on by their own default."""
    if not dimension.omitted_while_off:
        return dimension.options, dimension.options()
    off = OmittedWhen(lambda analysis: not getattr(analysis, name).enabled, "a dimension added after ids were in use, while off")
    return Annotated[dimension.options, off], dimension.options()


#: The `analysis` section: its own fields and one per dimension (`analysis.<name>`, its options).
AnalysisSpec = create_model(
    "AnalysisSpec", __base__=AnalysisSettings, __module__=__name__,
    **{name: dimension_field(name, dimension) for name, dimension in DIMENSIONS.items()},
)
