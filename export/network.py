"""The lineage's network rebuilt: its trunk spec read back from the run's params, the model built
from the registry for the dataset's shape (as the lineage built it), the round's weights loaded
and its masks checked to hold.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import torch
from pydantic import ValidationError
from torch import nn

from lth_sweep.trainables.data import Dataset
from lth_sweep.export.errors import ExportError
from lth_sweep.trainables.models import MODELS, PrunableModel, check_options
from lth_sweep.trainables import record
from lth_sweep.trainables.specs import LineageSpec, TrunkSpec
from lth_sweep.trainables.trunk import build_for, cached_dataset

log = logging.getLogger(__name__)

EXAMPLE_IMAGES = 64  #: test images a rebuilt network is checked on


def trunk_spec_of(params: dict[str, str], trunk_id: str | None = None) -> TrunkSpec:
    """The trunk spec of a lineage run: rebuilt from its canonical spec (`record.SPEC`), which must
    hash to the run's trunk id `trunk_id` exactly; from a run logged before that param existed, from
    its flat params (`trunk.data.name` = "shapes", ...). Paths need not exist: only the dataset's
    loader needs them."""
    if record.SPEC in params:
        try:
            spec = LineageSpec.model_validate_json(params[record.SPEC], context={"check_paths": False}).trunk
        except ValidationError as error:
            raise ExportError(f"the lineage's spec ({record.SPEC}) is not one this lth-sweep reads: {error}") from None
        if trunk_id and spec.id != trunk_id:
            raise ExportError(f"the lineage's spec rebuilds a trunk {spec.id}, but the run says {trunk_id}: not exported")
        return spec
    values: dict = {}
    for key, value in params.items():
        if not key.startswith("trunk."):
            continue
        *parents, leaf = key.removeprefix("trunk.").split(".")
        target = values
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = None if value == "null" else value
    try:
        spec = TrunkSpec.model_validate(values, context={"check_paths": False})
    except ValidationError as error:
        raise ExportError(f"the lineage's params do not make a trunk spec this lth-sweep reads: {error}") from None
    if trunk_id and spec.id != trunk_id:
        log.warning("the trunk spec read back from the params hashes to %s, the run says %s", spec.id, trunk_id)
    return spec


def dataset_of(spec: TrunkSpec) -> Dataset:
    """The lineage's dataset: its shape, class names and normalisation, and test images to check on."""
    try:
        return cached_dataset(spec.data)
    except (OSError, ValueError) as error:
        where = f" at {spec.data.path}" if spec.data.path else ""
        raise ExportError(
            f"the lineage's dataset {spec.data.name}{where} cannot be loaded ({type(error).__name__}: {error}); "
            "export needs it for the input shape, class names and normalisation, and to check the exported network"
        ) from None


@dataclass(frozen=True)
class Architecture:
    """How to construct the network: the registry's name, its class and the arguments."""

    name: str
    cls: type[nn.Module]
    arguments: dict


def architecture_of(spec: TrunkSpec, dataset: Dataset) -> Architecture:
    """What `trainables.models.build_model` calls for this spec, without pretrained weights (the
    round's weights replace them)."""
    factory = MODELS[spec.model.name]
    fixed = dict(factory.keywords) if isinstance(factory, partial) else {}
    cls = factory.func if isinstance(factory, partial) else factory
    options = {k: v for k, v in check_options(spec.model).items() if k != "weights"}
    shape = {"in_channels": dataset.in_channels, "image_size": dataset.image_size, "num_classes": dataset.num_classes}
    return Architecture(spec.model.name, cls, {**fixed, **shape, **options})


def rebuilt(spec: TrunkSpec, dataset: Dataset, weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> PrunableModel:
    """The network of the round, in eval mode: built as the lineage built it, weights loaded
    exactly; ExportError if they do not fit it or a pruned weight is not zero."""
    model = build_for(spec.model_copy(update={"model": spec.model.model_copy(update={"weights": None})}), dataset)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise ExportError(f"the round's weights do not fit {spec.model.name} built for this dataset: {error}") from None
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise ExportError(f"the round's masks name {name}, which {spec.model.name} does not have")
        if bool((params[name].detach()[~mask.to(torch.bool)] != 0).any()):
            raise ExportError(f"the round's weight {name} is non-zero where its mask prunes it: not the network the round evaluated")
    return model.eval()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def example_images(dataset: Dataset, count: int = EXAMPLE_IMAGES) -> torch.Tensor:
    """The first `count` test images, as the network sees them (normalised)."""
    images, _ = dataset.test.batch(slice(0, min(count, len(dataset.test))))
    return images.float()
