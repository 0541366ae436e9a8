"""Typed specs of what determines a trunk and a lineage.

Like open_lth's hyperparameter dataclasses, each spec has a canonical string (sorted JSON of its
fields) whose hash names it, so identity, de-duplication and resume follow from the spec alone.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def canonical(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:12]


class DataSpec(Spec):
    name: str = "shapes"
    path: str | None = Field(None, description="local dataset folder, for datasets read from disk")
    image_size: int = Field(16, ge=8)
    train_size: int = Field(4000, ge=1)
    test_size: int = Field(1000, ge=1)
    ood_size: int = Field(500, ge=0)
    seed: int = Field(0, description="seed of the data itself; the same for every training seed")

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from trainables.data import DATASETS

        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
        return name

    @field_validator("path")
    @classmethod
    def _existing_absolute_path(cls, path: str | None) -> str | None:
        # Trials run in their own working directory: only absolute paths survive the trip.
        if path is None:
            return None
        resolved = Path(path).expanduser().resolve()
        if not resolved.exists():
            raise ValueError(f"no such file or directory: {resolved}")
        return str(resolved)


class ModelSpec(Spec):
    name: str = "conv4"
    width: int | None = Field(None, ge=1, description="base width; None takes the model's default")

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        from trainables.models import MODELS

        if name not in MODELS:
            raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
        return name


class TrainSpec(Spec):
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_iterations: int = Field(0, ge=0)

    def iterations_per_epoch(self, train_size: int) -> int:
        return math.ceil(train_size / self.batch_size)


class PruneSpec(Spec):
    method: str = "imp"
    rate: float = Field(0.2, gt=0, lt=1, description="fraction of the remaining weights pruned per round")
    rounds: int = Field(5, ge=1)
    scope: Literal["global", "layerwise"] = "global"
    rewind: Literal["init"] | int = Field(
        "init", description="'init' resets to the initial weights; k rewinds to iteration k of the trunk"
    )
    reinit: bool = Field(False, description="control: keep the mask, draw a fresh initialisation")
    exclude: tuple[str, ...] | None = Field(
        None, description="weights never pruned; None takes the model's defaults"
    )

    @field_validator("rewind", mode="before")
    @classmethod
    def _rewind_point(cls, value):
        if value == "init" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return value
        raise ValueError("must be 'init' or an iteration number >= 0")

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        from trainables.pruning import PRUNING_METHODS

        if name not in PRUNING_METHODS:
            raise ValueError(f"unknown pruning method {name!r}; known: {', '.join(sorted(PRUNING_METHODS))}")
        return name

    @property
    def rewind_iteration(self) -> int:
        return 0 if self.rewind == "init" else int(self.rewind)

    @property
    def label(self) -> str:
        """Short human name used in tables and plot legends, e.g. 'imp@200+reinit'."""
        label = self.method if self.rewind == "init" else f"{self.method}@{self.rewind}"
        if self.scope == "layerwise":
            label += "/layerwise"
        return label + ("+reinit" if self.reinit else "")


class TrunkSpec(Spec):
    """The dense training shared by every lineage with the same data, model, recipe and seed."""

    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    seed: int

    def total_iterations(self) -> int:
        return self.train.epochs * self.train.iterations_per_epoch(self.data.train_size)


class LineageSpec(Spec):
    trunk: TrunkSpec
    pruning: PruneSpec

    @model_validator(mode="after")
    def _rewind_inside_training(self) -> "LineageSpec":
        total = self.trunk.total_iterations()
        if self.pruning.rewind_iteration >= total:
            raise ValueError(
                f"pruning.rewind={self.pruning.rewind} is not before the end of training "
                f"({total} iterations = train.epochs x ceil(data.train_size / train.batch_size))"
            )
        return self
