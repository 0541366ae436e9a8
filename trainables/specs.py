"""Typed specs of what determines a trunk and a lineage (see `trainables.canonical` for identity).

The pruning part of a lineage is the spec of one registered method (`trainables.pruning`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from lth_sweep.trainables.canonical import Spec
from lth_sweep.trainables.identity import OmittedWhen, OutOfIdentity
from lth_sweep.trainables.pruning import AnyPruneSpec
from lth_sweep.trainables.pruning.base import PruneSpec

__all__ = ["Spec", "DataSpec", "ModelSpec", "TrainSpec", "PruneSpec", "TrunkSpec", "LineageSpec"]


#: the largest image size a config may ask for. No built-in model is designed for more than 299 px
#: (inception_v3; the others 224 or less) and every loader resizes to `image_size`, so 1024 leaves
#: room for high-resolution folders while a typo (22400) fails here, not as an out-of-memory worker.
MAX_IMAGE_SIZE = 1024


def checks_paths(info: ValidationInfo) -> bool:
    """Whether files must exist: validating with context {"check_paths": False} (a dry run) only
    resolves paths, so a plan can be made where the data is not."""
    return (info.context or {}).get("check_paths", True)


EXECUTION = OutOfIdentity("how it runs, not what it computes")
ADDED_LATER = "added after ids were in use: part of the identity only where it changes something"
VALIDATION_WHY = "part of the identity only where it changes what is trained on (and added after ids were in use)"


def _validation_trains_as_before(data: "DataSpec") -> bool:
    """No validation split, or one generated apart (shapes, clutter): training, and so the trunk, is as it was."""
    from lth_sweep.trainables.data import SEPARATE_VALIDATION

    return not data.validation_size or data.name in SEPARATE_VALIDATION


class DataSpec(Spec):
    name: str = "shapes"
    path: str | None = Field(None, description="local dataset folder, for datasets read from disk")
    image_size: int = Field(16, ge=8, description=f"side of the (square) images every loader resizes to; at most {MAX_IMAGE_SIZE}")
    train_size: int = Field(4000, ge=1)
    test_size: int = Field(1000, ge=1)
    ood_size: int = Field(500, ge=0)
    seed: int = Field(0, description="seed of the data itself; the same for every training seed")
    ood_path: str | None = Field(
        None, description="local out-of-distribution set in format `ood_format`, sized and normalised like the data"
    )
    ood_format: str = Field("folder", description="on-disk dataset format of ood_path (a registered dataset name)")
    in_memory: bool | None = Field(
        None, description="decode all images into memory (True) or per batch (False); None: by size (trainables.data.disk)"
    )
    validation_size: Annotated[int, OmittedWhen(_validation_trains_as_before, VALIDATION_WHY)] = Field(
        0, ge=0,
        description="validation images for selecting the early-stopping iteration, never the test split (0: none): "
        "shapes and clutter generate them apart; other datasets hold min(this, 10% of train) out of training, drawn from seed",
    )

    def held_out(self, train_images: int | None = None) -> int:
        """Training images moved into the validation split (0 where it is generated apart)."""
        from lth_sweep.trainables.data import HELD_OUT_SHARE, SEPARATE_VALIDATION

        if not self.validation_size or self.name in SEPARATE_VALIDATION:
            return 0
        train = self.train_size if train_images is None else train_images
        return min(self.validation_size, int(train * HELD_OUT_SHARE))

    @field_validator("image_size")
    @classmethod
    def _not_absurd(cls, size: int) -> int:
        if size > MAX_IMAGE_SIZE:
            batch = 64 * 3 * size * size * 4  # one float32 batch of 64 RGB images, before any activation
            raise ValueError(
                f"{size} pixels is beyond {MAX_IMAGE_SIZE}, the most any built-in model or dataset is meant for "
                f"(the largest native input is inception_v3's 299); one batch of 64 such images alone would take "
                f"{batch / 2**30:,.0f} GiB"
            )
        return size

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from lth_sweep.trainables.data import DATASETS

        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
        return name

    @field_validator("path", "ood_path")
    @classmethod
    def _existing_absolute_path(cls, path: str | None, info: ValidationInfo) -> str | None:
        # Trials run in their own working directory: only absolute paths survive the trip.
        if path is None:
            return None
        resolved = Path(path).expanduser().resolve()
        if checks_paths(info) and not resolved.exists():
            raise ValueError(f"no such file or directory: {resolved}")
        return str(resolved)

    @field_validator("ood_format")
    @classmethod
    def _disk_format(cls, name: str) -> str:
        from lth_sweep.trainables.data import DATASETS
        from lth_sweep.trainables.data.disk import DiskFormat

        formats = sorted(n for n, loader in DATASETS.items() if isinstance(loader, DiskFormat))
        if name not in formats:
            raise ValueError(f"{name!r} is not a dataset format read from disk; known: {', '.join(formats)}")
        return name

    @model_validator(mode="after")
    def _readable_files(self, info: ValidationInfo) -> "DataSpec":
        # Cheap: required files exist and headers look right; nothing is loaded here.
        from lth_sweep.trainables.data import check_path

        if not checks_paths(info):
            return self
        check_path(self.name, self.path)
        if self.ood_path is not None:
            try:
                check_path(self.ood_format, self.ood_path, ood=True)
            except ValueError as error:
                raise ValueError(f"ood_path: {error}") from None
        return self


class ModelSpec(Spec):
    name: str = "conv4"
    width: int | None = Field(None, ge=1, description="base width; None takes the model's default")
    weights: str | None = Field(
        None, description="local file of pretrained weights (torchvision / open_clip models); nothing downloads"
    )

    @field_validator("weights")
    @classmethod
    def _existing_weights_file(cls, path: str | None, info: ValidationInfo) -> str | None:
        if path is None:
            return None
        resolved = Path(path).expanduser().resolve()
        if checks_paths(info) and not resolved.is_file():
            raise ValueError(f"no such weights file: {resolved}")
        return str(resolved)

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        from lth_sweep.trainables.models import MODELS

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
    schedule: Literal["constant", "cosine", "exponential"] = "constant"
    gamma: Annotated[float, OmittedWhen(lambda train: train.schedule != "exponential", ADDED_LATER)] = Field(
        0.95, gt=0, le=1, description="exponential schedule: the lr is multiplied by gamma every epoch"
    )
    warmup_iterations: int = Field(0, ge=0)
    precision: Annotated[Literal["fp32", "bf16"], OmittedWhen(lambda train: train.precision == "fp32", ADDED_LATER)] = Field(
        "fp32", description="bf16: forward and loss under torch.autocast"
    )
    # How the spec runs, not what it computes (see trainables.device): left out of the identity, so
    # moving a sweep to a GPU, or giving it loader workers, reuses its finished runs. Numerics differ
    # only in rounding, as from one machine to another.
    device: Annotated[Literal["auto", "cpu", "cuda"], EXECUTION] = Field(
        "cpu", description="auto: CUDA when this process may use a GPU (in Ray: when the trial was given one)"
    )
    channels_last: Annotated[bool, EXECUTION] = Field(False, description="NHWC memory layout for the model and its inputs")
    workers: Annotated[int, EXECUTION] = Field(0, ge=0, description="loader processes prefetching batches of file-backed splits")
    pin_memory: Annotated[bool, EXECUTION] = Field(True, description="pinned host memory for prefetched batches copied to a GPU")

    def iterations_per_epoch(self, train_size: int) -> int:
        return math.ceil(train_size / self.batch_size)


class TrunkSpec(Spec):
    """The dense training shared by every lineage with the same data, model, recipe and seed."""

    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    seed: int

    def total_iterations(self) -> int:
        return self.train.epochs * self.train.iterations_per_epoch(self.data.train_size - self.data.held_out())


class LineageSpec(Spec):
    trunk: TrunkSpec
    pruning: AnyPruneSpec

    @model_validator(mode="after")
    def _rewind_inside_training(self) -> "LineageSpec":
        total = self.trunk.total_iterations()
        if self.pruning.rewind_iteration >= total:
            raise ValueError(
                f"pruning.rewind={self.pruning.rewind} is not before the end of training "
                f"({total} iterations = train.epochs x ceil(data.train_size / train.batch_size))"
            )
        return self
