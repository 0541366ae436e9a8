"""Where and how a network trains: device, precision, memory layout, and batches that arrive there.

`device: auto` is CUDA when this process may use a GPU. Outside Ray that is "torch sees one".
Inside a Ray task or actor it is "Ray assigned this task a GPU": since Ray 2.4x Ray no longer
hides the GPUs from tasks that asked for none (RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO), so torch alone
would put every CPU trial of a GPU node on GPU 0, unscheduled. A fractional GPU
(`resources.gpus_per_trial: 0.25`) is an assigned GPU: Ray sets CUDA_VISIBLE_DEVICES to it and
`cuda` is that device.

What lives where: the model, its masks during training and the batches are on the device;
everything handed on (trunk results, round weights, masks in checkpoints, MLflow artifacts) is on
the CPU, contiguous. Pruning decisions are taken on the CPU (see `trainables.lineage`).

Batches: an in-memory split (ImageSplit) is copied to a CUDA device once when it takes at most
`DEVICE_DATA_SHARE` of the device's free memory, and indexed there; otherwise each batch is copied.
A file-backed split (LazySplit) with `workers > 0` is decoded by a torch DataLoader whose workers
prefetch whole batches in order (pinned when `pin_memory` and CUDA), so decoding overlaps training.

oneDNN (torch.backends.mkldnn) is left on: measured here (torch 2.14, 1 thread, AVX2), turning it
off made training slower for every model tried (GoogLeNet at 15 px 0.19 -> 1.3 s per batch of 64,
ResNet-20 at 32 px 0.93 -> 1.7 s, Conv-4 at 16 px 19 -> 36 ms). bf16 on a CPU without AVX512-BF16
or AMX is emulated, 30-60x slower than fp32 here: it is meant for GPUs (on CPUs it serves tests).
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from lth_sweep.trainables.data import ImageSplit, Split

DEVICE_DATA_SHARE = 0.25  # of free device memory an in-memory split may take (four trials per GPU fit)
PREFETCH_BATCHES = 2  # per loader worker

Batch = tuple[torch.Tensor, torch.Tensor]
State = dict[str, torch.Tensor]


class DeviceError(RuntimeError):
    """The requested device is not usable here; retrying on the same worker fails the same way."""


def ray_gpu_ids() -> list[str] | None:
    """GPU ids Ray assigned to this task or actor; None when this process is not a Ray worker."""
    ray = sys.modules.get("ray")  # never imported: certainly not a Ray worker
    if ray is None or not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    if context.worker.mode != ray._private.worker.WORKER_MODE:  # the driver
        return None
    return list(context.get_accelerator_ids().get("GPU", []))


def choose_device(requested: str, cuda_available: bool, ray_gpus: list[str] | None) -> torch.device:
    """The rule, as a pure function of the facts (see the module docstring)."""
    in_ray_without_gpu = ray_gpus is not None and not ray_gpus
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "auto":
        return torch.device("cuda" if cuda_available and not in_ray_without_gpu else "cpu")
    if requested != "cuda":
        raise DeviceError(f"train.device={requested!r}: expected auto, cpu or cuda")
    if in_ray_without_gpu:
        raise DeviceError("train.device=cuda but Ray gave this task no GPU: set resources.gpus_per_trial (e.g. 0.25)")
    if not cuda_available:
        raise DeviceError("train.device=cuda but torch sees no CUDA device here (device: auto falls back to the CPU)")
    return torch.device("cuda")


def resolve_device(requested: str) -> torch.device:
    return choose_device(requested, torch.cuda.is_available(), ray_gpu_ids())


def placement(device: torch.device) -> str:
    """What a run's `lth.device` tag says: the device, and the GPUs Ray assigned when there are any."""
    gpus = ",".join(ray_gpu_ids() or [])
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}" + (f" (Ray GPU ids {gpus})" if gpus else "")
    if gpus:  # worth saying: a GPU was reserved and is not used
        return f"cpu: {torch.get_num_threads()} threads (Ray GPU ids {gpus} assigned, but torch sees no CUDA device)"
    return f"cpu: {torch.get_num_threads()} threads"


def cpu_state(model: nn.Module) -> State:
    """The model's weights as contiguous CPU copies: what checkpoints, Ray and MLflow receive."""
    contiguous = torch.contiguous_format
    return {k: v.detach().to("cpu", memory_format=contiguous, copy=True) for k, v in model.state_dict().items()}


def to_device(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Same tensors when already there (so in-place updates stay shared on the CPU)."""
    return {k: v.to(device) for k, v in tensors.items()}


@dataclass(frozen=True)
class Runtime:
    """How one training spec runs in this process; `Runtime.of(spec)` resolves `spec.device`."""

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    channels_last: bool = False
    workers: int = 0
    pin_memory: bool = True

    @classmethod
    def of(cls, spec) -> "Runtime":
        return cls(
            device=resolve_device(getattr(spec, "device", "cpu")),
            precision=getattr(spec, "precision", "fp32"),
            channels_last=getattr(spec, "channels_last", False),
            workers=getattr(spec, "workers", 0),
            pin_memory=getattr(spec, "pin_memory", True),
        )

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def place(self, model: nn.Module) -> nn.Module:
        """Moves the model in place (its Parameter objects stay the same)."""
        if self.channels_last:
            return model.to(self.device, memory_format=torch.channels_last)
        return model.to(self.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def inputs(self, images: torch.Tensor, labels: torch.Tensor) -> Batch:
        non_blocking = images.is_pinned()
        images = images.to(self.device, non_blocking=non_blocking)
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, non_blocking=non_blocking)

    def batches(self, split: Split, indices: Sequence) -> Iterator[Batch]:
        """The batches `split.batch(indices[0])`, `split.batch(indices[1])`, ... on the device."""
        if isinstance(split, ImageSplit) or self.workers == 0:
            split = on_device(split, self.device)
            return (self.inputs(*split.batch(pick)) for pick in indices)
        return self._prefetched(split, indices)

    def _prefetched(self, split: Split, indices: Sequence) -> Iterator[Batch]:
        loader = torch.utils.data.DataLoader(
            _Batches(split, indices),
            batch_size=None,  # each item already is a batch
            num_workers=self.workers,
            prefetch_factor=PREFETCH_BATCHES,
            pin_memory=self.pin_memory and self.device.type == "cuda",
        )
        return (self.inputs(images, labels) for images, labels in loader)


class _Batches(torch.utils.data.Dataset):
    def __init__(self, split: Split, indices: Sequence):
        self.split, self.indices = split, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> Batch:
        return self.split.batch(self.indices[item])


@dataclass(eq=False)
class DeviceSplit:
    """An in-memory split held on a CUDA device: `batch` indexes there, nothing is copied."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, indices) -> Batch:
        if isinstance(indices, torch.Tensor):
            indices = indices.to(self.images.device)
        return self.images[indices], self.labels[indices]


_ON_DEVICE: dict[tuple[int, str], tuple[ImageSplit, DeviceSplit]] = {}  # keeps the split alive: its id stays valid


def on_device(split: Split, device: torch.device) -> Split | DeviceSplit:
    """`split` itself, or its copy on a CUDA device when it fits (one copy per process)."""
    if device.type != "cuda" or not isinstance(split, ImageSplit):
        return split
    key = (id(split), str(device))
    if key not in _ON_DEVICE:
        free, _ = torch.cuda.mem_get_info(device)
        size = split.images.element_size() * split.images.nelement()
        if size > DEVICE_DATA_SHARE * free:
            return split
        while len(_ON_DEVICE) >= 4:
            _ON_DEVICE.pop(next(iter(_ON_DEVICE)))
        _ON_DEVICE[key] = (split, DeviceSplit(split.images.to(device), split.labels.to(device)))
    return _ON_DEVICE[key][1]
