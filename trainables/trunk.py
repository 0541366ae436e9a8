"""Dense trunk training: done once per (data, model, recipe, seed) and shared by its lineages.

The result holds plain numpy arrays (on the CPU, whatever the training device) so that it travels
through Ray's object store zero-copy; receivers copy before use (`as_tensors`), since those arrays
arrive read-only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from lth_sweep.trainables.data import Dataset, load_dataset
from lth_sweep.trainables.device import Runtime, placement
from lth_sweep.trainables.early_stopping import ValidationTracker, validation_split
from lth_sweep.trainables.models import build_model
from lth_sweep.trainables.specs import DataSpec, TrunkSpec
from lth_sweep.trainables.training import evaluate, train

State = dict[str, np.ndarray]


@dataclass
class TrunkResult:
    spec: TrunkSpec
    init: State
    snapshots: dict[int, State]  # rewind iteration -> weights at that iteration
    final: State
    metrics: dict[str, float]
    seconds: float
    total_iterations: int = field(default=0)
    device: str = ""  # where it trained, as `placement()` describes it

    def rewind_state(self, iteration: int) -> State:
        if iteration == 0:
            return self.init
        if iteration not in self.snapshots:
            raise KeyError(f"trunk {self.spec.id} has no snapshot at iteration {iteration}")
        return self.snapshots[iteration]


def to_numpy(state: dict[str, torch.Tensor]) -> State:
    return {name: tensor.detach().cpu().numpy().copy() for name, tensor in state.items()}


def as_tensors(state: State) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(array) for name, array in state.items()}


@lru_cache(maxsize=2)
def cached_dataset(spec: DataSpec) -> Dataset:
    """Datasets are deterministic in their spec; a worker process builds each one once."""
    return load_dataset(spec)


def build_for(spec: TrunkSpec, dataset: Dataset):
    return build_model(
        spec.model, in_channels=dataset.in_channels, image_size=dataset.image_size, num_classes=dataset.num_classes
    )


def train_trunk(
    spec: TrunkSpec, rewind_iterations: tuple[int, ...] = (), validation_every: int = 0, validation_images: int | None = None,
    data_order_seed: int | None = None,
) -> TrunkResult:
    """Trains the dense network. `validation_every` > 0 also measures its early-stopping iteration
    (`trainables.early_stopping`, as a lineage does: the dense reference of that measure), on
    `validation_images` of the data's validation split (all of it by default).

    `data_order_seed` (None: the trunk's own seed) trains the same init, drawn from `spec.seed`,
    on another example order and with other SGD noise (torch's generator, e.g. dropout, reseeded
    with it after the init draw): the dense twin of `trainables.twin`."""
    started = time.perf_counter()
    dataset = cached_dataset(spec.data)
    torch.manual_seed(spec.seed)
    model = build_for(spec, dataset)
    init = to_numpy(model.state_dict())  # initialised on the CPU whatever the device: same draw everywhere
    if data_order_seed is not None:
        torch.manual_seed(data_order_seed)
    runtime = Runtime.of(spec.train)
    runtime.place(model)
    wanted = {k for k in rewind_iterations if k > 0}
    snapshots: dict[int, State] = {}

    def snapshot(iteration: int) -> None:
        if iteration in wanted:
            snapshots[iteration] = to_numpy(model.state_dict())

    tracker = None
    if validation_every:
        tracker = ValidationTracker(model, validation_split(dataset, validation_images), validation_every, test=dataset.test)
    callbacks = (tracker,) if tracker else ()
    order = spec.seed if data_order_seed is None else data_order_seed
    train(model, dataset.train, spec.train, seed=order, on_iteration=snapshot, runtime=runtime, callbacks=callbacks)
    missing = wanted - set(snapshots)
    if missing:
        raise ValueError(f"rewind iterations {sorted(missing)} lie beyond the trunk's training")
    scores = evaluate(model, dataset.test, runtime=runtime)
    early_stopping = tracker.metrics() if tracker else {}
    return TrunkResult(
        spec=spec,
        init=init,
        snapshots=snapshots,
        final=to_numpy(model.state_dict()),
        metrics={"test/acc": scores["acc"], "test/loss": scores["loss"], **early_stopping},
        seconds=time.perf_counter() - started,
        total_iterations=spec.total_iterations(),
        device=placement(runtime.device),
    )
