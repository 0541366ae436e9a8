"""What every pruning method shares: the options common to all lineages, and what a method sees.

A method is a module in this package with
  - `Spec`: a subclass of `PruneSpec` with `method: Literal["<name>"]` and the method's own options,
    overriding the hooks below where the method needs them (each has its default here);
  - `next_masks(ctx: PruneContext) -> Masks`: the masks for round `ctx.round`;
and one line in `PRUNING_METHODS` (`trainables/pruning/__init__.py`).

Round r of every method reaches the nominal sparsity 1 - (1 - rate)^r over the pruned layers, so
methods are compared at the same sparsities. Iterative methods get there from the previous round's
masks and trained weights; one-shot methods from the dense network, anew each round.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field, field_validator

from lth_sweep.trainables.canonical import Spec
from lth_sweep.trainables.identity import OutOfIdentity
from lth_sweep.trainables.masks import Masks



class PruneSpec(Spec):
    method: str
    rate: float = Field(0.2, gt=0, lt=1, description="sparsity step: round r reaches 1 - (1 - rate)^r")
    rounds: int = Field(5, ge=1)
    scope: Literal["global", "layerwise"] = "global"
    rewind: Literal["init"] | int = Field(
        "init", description="'init' resets to the initial weights; k rewinds to iteration k of the trunk"
    )
    reinit: bool = Field(False, description="control: keep the masks, train a fresh initialisation")
    shuffle: bool = Field(False, description="control: shuffle each layer's mask (same per-layer sparsity)")
    exclude: tuple[str, ...] | None = Field(None, description="weights never pruned; None takes the model's defaults")
    allow_layer_collapse: bool = Field(False, description="let a layer lose all its weights")
    name: Annotated[str | None, OutOfIdentity("a label: renaming an entry keeps its lineages and their runs")] = Field(
        None, description="the entry's label in tables, legends and verdicts (default: the method and its variant, "
        "e.g. imp@125+reinit); not part of the lineage's identity",
    )

    @field_validator("rewind", mode="before")
    @classmethod
    def _rewind_point(cls, value):
        if value == "init" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return value
        raise ValueError("must be 'init' or an iteration number >= 0")

    @property
    def rewind_iteration(self) -> int:
        return 0 if self.rewind == "init" else int(self.rewind)

    def target_sparsity(self, round_index: int) -> float:
        return 1 - (1 - self.rate) ** round_index

    #: Hook: a removed output channel takes its bias and its norm layer's scale and shift with it,
    #: so the channel outputs exactly zero (structured filter pruning); the lineage masks them too.
    removes_output_channels: ClassVar[bool] = False

    def variant(self) -> str:
        """Method-specific part of the label; methods with options that matter override this."""
        return ""

    def retrain_from_trained_weights(self) -> bool:
        """Hook: retrain each round from the previous round's trained weights, rewinding only the
        learning-rate schedule (Renda et al. 2020), instead of from the rewind point. Default: no."""
        return False

    def training_callbacks(self, ctx: "PruneContext", model: torch.nn.Module, masks: Masks) -> tuple:
        """Hook: extra callbacks for the round's retraining (dynamic sparse training moves `masks`
        in place while it trains). Default: none."""
        return ()

    @property
    def label(self) -> str:
        """Short human name for tables and legends, e.g. 'imp@200+reinit', or the entry's `name`."""
        return self.name or self.default_label

    @property
    def default_label(self) -> str:
        """The method and what distinguishes its variant, e.g. 'imp@200+reinit'."""
        label = self.method + self.variant()
        if self.rewind != "init":
            label += f"@{self.rewind}"
        if self.scope == "layerwise":
            label += "/layerwise"
        return label + ("+reinit" if self.reinit else "") + ("+shuffle" if self.shuffle else "")


@dataclass
class PruneContext:
    spec: PruneSpec
    round: int  # 1-based
    target: float  # nominal sparsity over the pruned layers after this round
    masks: Masks  # the previous round's masks (all True at round 1)
    trained: dict[str, torch.Tensor]  # the previous round's trained weights (the trunk's at round 1)
    dense: dict[str, torch.Tensor]  # the dense trunk's trained weights
    start: dict[str, torch.Tensor]  # the weights retraining starts from (init or iteration k)
    model: torch.nn.Module  # a built model, for methods that score with forward/backward passes
    data: object  # the training split (ImageSplit)
    seed: int
    total_iterations: int = 0  # of the training schedule; retraining runs from spec.rewind_iteration to here
    notes: list[str] = field(default_factory=list)  # things the run should say (e.g. collapse avoided)

    def collapse_avoided(self, saved_layers: list[str], kept: str) -> None:
        """Says, for the run, which layers kept `kept` (e.g. "the largest weight") to avoid collapse."""
        self.notes += [f"layer collapse avoided: kept {kept} of {name}" for name in saved_layers]

    def all_kept(self) -> Masks:
        return {name: torch.ones_like(mask) for name, mask in self.masks.items()}

    def generator(self, salt: int = 0) -> torch.Generator:
        """A generator seeded by (seed, round, salt): the same every time this round is replayed."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.round * 7919 + salt)
