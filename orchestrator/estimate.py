"""What a sweep will cost, from its plan alone (no data, no Ray): training iterations, images and
FLOPs per trunk and lineage, the resources its tasks ask Ray for, and a rough wall time.

FLOPs = 2 per multiply-accumulate (MAC) x (3 per trained image: forward + backward, 1 per evaluated
image). The MACs of one image's forward pass are counted by hooks on the conv and linear layers of
the model built on torch's meta device (no memory, no data; a tiny CPU forward for models that
cannot be built there); norms, activations and pooling are left out (a few percent). Unstructured
sparsity saves nothing: pruned weights still go through dense kernels. Not counted: pruning scores
(SNIP, GraSP, SynFlow: one round's worth of batches at most).

The analysis (`orchestrator.estimate_analysis`) runs on its own actors, beside training: each
round of each lineage and each trunk's dense reference (and noise floor) is one measurement. The
sweep runs at the pace of the slower pipeline: lineages training `slots` at a time, or their rounds
analysed `actors` at a time. Each trunk's dense twin (`orchestrator.estimate_twin`) adds one dense
training beside them, on the actors' resources, and one measurement on the actors.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from lth_sweep.orchestrator.estimate_analysis import ANALYSIS_GPU_FLOPS, analysis_plan
from lth_sweep.orchestrator.estimate_fixed import fixed_costs
from lth_sweep.orchestrator.estimate_twin import TwinEstimate, twin_jobs, twin_line, twin_resources
from lth_sweep.trainables.data.describe import Description, describe
from lth_sweep.trainables.specs import LineageSpec, ModelSpec, TrunkSpec
from lth_sweep.trainables.ticket_sharing import has_control

# Rough sustained training throughput, for the wall-time estimate only.
CPU_FLOPS_PER_THREAD = 30e9  # measured here (AVX2 core, fp32): Conv-4, VGG-16, ResNet-20 at 16-32 px
GPU_FLOPS = 20e12  # one A100-class GPU, fp32/TF32; small networks are launch-bound and reach far less
BF16_GPU_SPEEDUP = 2.0
BF16_CPU_SLOWDOWN = 40.0  # emulated without AVX512-BF16/AMX (measured here: 30-60x)
# Small networks on a GPU are bound by kernel launches, not FLOPs. Per training step and layer with
# parameters (conv, linear, norm): what one process spends launching, and what the GPU spends per
# layer when many processes share it. From issue 14's H200 (ResNet-20, 43 such layers, batch 128,
# bf16): 67 iterations/s in one process, 354/s in all from 10 processes, ~1% of the FLOP rate above.
GPU_STEP_SECONDS_PER_LAYER = 1 / (67 * 43)
GPU_SHARED_SECONDS_PER_LAYER = 1 / (354 * 43)


@dataclass(frozen=True)
class Cost:
    iterations: int  # training iterations
    images: int  # training images seen
    flops: float  # training and evaluation


def si(value: float, unit: str = "") -> str:
    """1.2M, or with a unit 23.7 TFLOP."""
    for prefix, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f}{' ' if unit else ''}{prefix}{unit}"
    return f"{value:.0f}{' ' if unit else ''}{unit}"


def duration(seconds: float) -> str:
    for unit, scale in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.1f} {unit}"
    return f"{seconds:.0f} s"


def count_macs(model: nn.Module, shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of conv and linear layers for one input of `shape`."""
    total = 0

    def hook(module: nn.Module, _, output: torch.Tensor) -> None:
        nonlocal total
        per_output = module.in_features if isinstance(module, nn.Linear) else (
            module.in_channels // module.groups * math.prod(module.kernel_size)
        )
        total += output.numel() // output.shape[0] * per_output

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()  # batch norm accepts a batch of one
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return total


def _architecture(model: ModelSpec, data: Description, device: str) -> nn.Module:
    """The model's layers for this data, without its weights (the architecture is enough, and
    weights may not be here)."""
    from lth_sweep.trainables.models import build_model

    shape = {"in_channels": data.channels, "image_size": data.size, "num_classes": data.classes}
    with torch.device(device):
        return build_model(model.model_copy(update={"weights": None}), **shape)


@lru_cache(maxsize=64)
def forward_macs(model: ModelSpec, data: Description) -> int | None:
    """MACs of one forward pass on one image; None if the model cannot be built for this data."""
    for device in ("meta", "cpu"):
        try:
            return count_macs(_architecture(model, data, device), data.shape)
        except Exception:  # noqa: BLE001 - open_clip models cannot live on meta; any model may reject the shape
            continue
    return None


@lru_cache(maxsize=64)
def parametrised_layers(model: ModelSpec, data: Description) -> int:
    """Modules holding parameters of their own (conv, linear, norm): the kernels a step launches;
    0 (no launch floor) for a model that cannot be built on the meta device."""
    try:
        built = _architecture(model, data, "meta")
    except Exception:  # noqa: BLE001 - as forward_macs
        return 0
    return sum(1 for module in built.modules() if next(module.parameters(recurse=False), None) is not None)


def _flops(macs: int | None, trained: float, evaluated: float) -> float:
    return 0.0 if macs is None else 2.0 * macs * (3 * trained + evaluated)


def trunk_cost(spec: TrunkSpec) -> Cost:
    data = describe(spec.data)
    per_epoch = spec.train.iterations_per_epoch(data.train)
    images = spec.train.epochs * data.train
    return Cost(spec.train.epochs * per_epoch, images, _flops(forward_macs(spec.model, data), images, data.test))


@lru_cache(maxsize=1024)
def _described(data) -> Description:
    """`describe`, once per data spec: Tune's queue order asks for every lineage of a sweep."""
    return describe(data)


def retrainings(spec: LineageSpec, trains_ticket: bool = True) -> tuple[int, int]:
    """(trainings, iterations each) of a lineage: every round retrains from the rewind point to the
    end of the schedule, twice for a control (`reinit`, `shuffle`) that trains its ticket too.
    The one cost rule the plan, the estimate and Tune's queue order read."""
    trunk, pruning = spec.trunk, spec.pruning
    total = trunk.train.epochs * trunk.train.iterations_per_epoch(_described(trunk.data).train)
    return pruning.rounds * (2 if has_control(spec) and trains_ticket else 1), max(0, total - pruning.rewind_iteration)


def lineage_cost(spec: LineageSpec, validation_every: int = 0, trains_ticket: bool = True) -> Cost:
    """Every round retrains from the rewind point and evaluates the test split, plus a validation
    pass every `validation_every` iterations (the early-stopping measure). A control (`reinit`,
    `shuffle`) trains twice per round, unless another lineage trains its ticket (`trains_ticket`
    False: `trainables.ticket_sharing`)."""
    trunk, pruning = spec.trunk, spec.pruning
    data = describe(trunk.data)
    trainings, iterations = retrainings(spec, trains_ticket)
    images = max(0, trunk.train.epochs * data.train - pruning.rewind_iteration * trunk.train.batch_size)
    validations = iterations // validation_every if validation_every else 0
    evaluated = pruning.rounds * data.test * (1 + validations)
    macs = forward_macs(trunk.model, data)
    return Cost(trainings * iterations, trainings * images, _flops(macs, trainings * images, evaluated))


@dataclass(frozen=True)
class Machine:
    """Where the wall time is estimated: this machine, with one GPU assumed if it has none and the
    sweep asks for GPUs, or the one a dry run's `--machine` names."""

    cpus: int
    gpus: int
    gpus_assumed: bool = False
    called: str = "this machine"

    @classmethod
    def here(cls, wants_gpus: bool) -> "Machine":
        gpus = torch.cuda.device_count()
        return cls(os.cpu_count() or 1, gpus or int(wants_gpus), wants_gpus and not gpus)

    @classmethod
    def parse(cls, text: str) -> "Machine":
        """`CPUS[:GPUS]`, e.g. 16:1 (the dry run's `--machine`)."""
        try:
            cpus, _, gpus = text.partition(":")
            machine = cls(int(cpus), int(gpus or 0), called="the --machine")
        except ValueError:
            raise ValueError(f"--machine {text!r}: expected CPUS[:GPUS], e.g. 16:1") from None
        if machine.cpus < 1 or machine.gpus < 0:
            raise ValueError(f"--machine {text!r}: at least one CPU and no negative count of GPUs")
        return machine


    def slots(self, cpus_per_trial: float, gpus_per_trial: float, limit: int | None) -> int:
        """Trials at a time (at least one, for the estimate, even if none fits: see `fits`)."""
        fits = [math.floor(self.cpus / cpus_per_trial + 1e-9)]
        if gpus_per_trial > 0:
            fits.append(math.floor(self.gpus / gpus_per_trial + 1e-9))
        if limit:
            fits.append(limit)
        return max(1, min(fits))

    def fits(self, cpus_per_trial: float, gpus_per_trial: float) -> bool:
        return cpus_per_trial <= self.cpus and gpus_per_trial <= self.gpus and not (self.gpus_assumed and gpus_per_trial > 0)


def on_gpu(train, gpus_per_trial: float) -> bool:
    return train.device == "cuda" or (train.device == "auto" and gpus_per_trial > 0)


def speed(train, cpus_per_trial: float, gpus_per_trial: float) -> float:
    """FLOP/s of one trial (or trunk task)."""
    if on_gpu(train, gpus_per_trial):
        return GPU_FLOPS * gpus_per_trial * (BF16_GPU_SPEEDUP if train.precision == "bf16" else 1.0)
    rate = CPU_FLOPS_PER_THREAD * max(1, int(cpus_per_trial))
    return rate / BF16_CPU_SLOWDOWN if train.precision == "bf16" else rate


def phase_seconds(seconds: list[float], slots: int) -> float:
    """Jobs packed onto `slots` at a time: no shorter than the longest, nor than the total / slots."""
    return max(max(seconds, default=0.0), sum(seconds) / slots)


def training_seconds(jobs: list[tuple[TrunkSpec, Cost]], res, machine: Machine) -> float:
    """One phase (the trunks, or the lineages), `machine.slots` jobs at a time. On a GPU a job
    takes no less than its launches, and the GPU serves no more launches than it can in all."""
    cpus, gpus = res.cpus_per_trial, res.gpus_per_trial
    seconds, gpu_layer_steps = [], 0
    for spec, cost in jobs:
        compute = cost.flops / speed(spec.train, cpus, gpus)
        if on_gpu(spec.train, gpus):
            layer_steps = cost.iterations * parametrised_layers(spec.model, describe(spec.data))
            gpu_layer_steps += layer_steps
            compute = max(compute, layer_steps * GPU_STEP_SECONDS_PER_LAYER)
        seconds.append(compute)
    shared_gpu = gpu_layer_steps * GPU_SHARED_SECONDS_PER_LAYER / max(1, machine.gpus)
    return max(phase_seconds(seconds, machine.slots(cpus, gpus, res.max_concurrent_trials)), shared_gpu)


def notes(trunks: list[TrunkSpec], cpus_per_trial: float, gpus_per_trial: float) -> list[str]:
    """What the user may want to know before spending the compute."""
    from lth_sweep.trainables.data import DATASETS
    from lth_sweep.trainables.data.disk import MEMORY_BUDGET, DiskFormat

    out = []
    for spec in {t.data: t for t in trunks}.values():
        data = describe(spec.data)
        if data.train < spec.data.train_size:
            about = "about " if data.assumed else ""
            out.append(
                f"data.train_size={spec.data.train_size} but {spec.data.name} has {about}{data.train} training images: "
                f"epochs are that long (rewind points and RigL count iterations from train_size)"
            )
        if data.assumed:
            out.append(f"{spec.data.name}: {' and '.join(data.assumed)} assumed (known only from its files)")
        if spec.train.workers and isinstance(DATASETS[spec.data.name], DiskFormat):
            held = spec.data.in_memory
            if held is None:
                held = (data.train + data.test) * 4 * data.channels * data.size**2 <= MEMORY_BUDGET
            if held:
                out.append(f"{spec.data.name} at {data.size} px is held in memory: train.workers is unused")
    if any(t.train.workers and t.train.workers + 1 > cpus_per_trial for t in trunks):
        out.append("loader workers are processes: resources.cpus_per_trial >= 1 + train.workers avoids oversubscription")
    if any(t.train.precision == "bf16" and not on_gpu(t.train, gpus_per_trial) for t in trunks):
        slower = f"~{BF16_CPU_SLOWDOWN:.0f}x slower than fp32"
        out.append(f"bf16 on a CPU without native bf16 is emulated, {slower}: it is meant for GPUs")
    return out


def twin_estimate(analysis, trunks: list[tuple[TrunkSpec, Cost]], machine: Machine) -> TwinEstimate | None:
    """The dense twins' cost: their trainings on the actors' resources, `actors` at a time, and
    one measurement each; None when they are off."""
    jobs = twin_jobs(analysis, trunks)
    if not jobs:
        return None
    planned = analysis_plan(analysis, [(spec, 1) for spec, _ in jobs], forward_macs)
    training = training_seconds(jobs, twin_resources(analysis), machine)
    return TwinEstimate(len(jobs), sum(cost.flops for _, cost in jobs), training, planned.seconds)


def analysis_side(planned, twins: TwinEstimate | None) -> float:
    """Seconds of what runs beside the lineages: the measurements on the actors (the twins' too),
    and the twins' trainings, which run beside the actors on resources of their own."""
    seconds = list(planned.seconds) + (twins.measurements if twins else [])
    return max(phase_seconds(seconds, planned.actors), twins.training if twins else 0.0)


def report(
    config,
    trunks: list[tuple[TrunkSpec, Cost]],
    lineages: list[tuple[TrunkSpec, Cost]],
    measurements: list[tuple[TrunkSpec, int]] = (),
    machine: Machine | None = None,
    rounds: int = 0,
) -> list[str]:
    """Totals, what Ray is asked for, a wall time on `machine` (default: this one), and notes.
    `lineages` pairs each lineage's trunk spec (its recipe) with the lineage's cost; `measurements`:
    see `analysis_plan`."""
    res, analysis = config.resources, config.analysis
    cpus, gpus = res.cpus_per_trial, res.gpus_per_trial
    trunk_flops, lineage_flops = sum(c.flops for _, c in trunks), sum(c.flops for _, c in lineages)
    ask = f"{{CPU: {cpus:g}" + (f", GPU: {gpus:g}}}" if gpus else "}")
    devices = "/".join(sorted({"GPU" if on_gpu(s.train, gpus) else "CPU" for s, _ in trunks}))
    actor_gpus = analysis.gpus_per_actor if analysis.enabled else 0.0
    machine = machine or Machine.here(wants_gpus=gpus > 0 or actor_gpus > 0)
    slots = machine.slots(cpus, gpus, res.max_concurrent_trials)
    trunk_s, training_s = (training_seconds(jobs, res, machine) for jobs in (trunks, lineages))
    fixed = fixed_costs(len(lineages), len(trunks), rounds, slots)
    trunk_s += fixed.before_trunks + fixed.between  # the sweep's start, its runs, Tune's start
    lineage_s = fixed.lineage_phase(training_s) + fixed.finish
    trained = "trial overheads (many short lineages)" if fixed.on_slots > training_s else "training"
    gpus_here = f"{machine.gpus} GPU{'s' if machine.gpus != 1 else ''}" + (" (assumed)" if machine.gpus_assumed else "")
    launches = (
        f", at least {GPU_STEP_SECONDS_PER_LAYER * 1e3:.2f} ms per step and layer of a trial and "
        f"{GPU_SHARED_SECONDS_PER_LAYER * 1e3:.3f} ms per GPU (launch-bound small networks: issue 14's H200)"
        if any(on_gpu(spec.train, gpus) for spec, _ in trunks) else ""
    )
    start = [] if machine.fits(cpus, gpus) else [
        f"trials asking for {ask} never start on {machine.called} ({machine.cpus} CPUs, "
        f"{0 if machine.gpus_assumed else machine.gpus} GPUs): run the sweep on a cluster (--address)"
    ]
    actor_ask = f"{{CPU: {analysis.cpus_per_actor:g}" + (f", GPU: {actor_gpus:g}}}" if actor_gpus else "}")
    if analysis.enabled and not machine.fits(analysis.cpus_per_actor, actor_gpus):
        start.append(
            f"analysis actors asking for {actor_ask} never start on {machine.called} ({machine.cpus} CPUs, "
            f"{0 if machine.gpus_assumed else machine.gpus} GPUs): run the sweep on a cluster (--address)"
        )
    planned = analysis_plan(analysis, list(measurements), forward_macs)
    twins = twin_estimate(analysis, trunks, machine)
    twin_flops = twins.flops if twins else 0.0
    total_flops = trunk_flops + lineage_flops + twin_flops
    lines = [
        f"compute: {si(total_flops, 'FLOP')} (trunks {si(trunk_flops, 'FLOP')}, lineages "
        f"{si(lineage_flops, 'FLOP')}" + (f", dense twins {si(twin_flops, 'FLOP')}" if twins else "")
        + "): 2 FLOPs per multiply-accumulate x (3 per trained image + 1 per evaluated); "
        "dense kernels; pruning scores not counted",
        f"resources: each trunk task and each lineage trial asks Ray for {ask} and trains on the {devices}; "
        + (f"analysis: {analysis.actors} actor(s) x {actor_ask}, measuring on the "
           f"{'GPU' if actor_gpus > 0 else 'CPU'}; " if analysis.enabled else "")
        + f"max concurrent trials: {res.max_concurrent_trials or 'as many as the cluster fits'}",
    ]
    analysis_s = 0.0 if planned is None else phase_seconds(planned.seconds, planned.actors)
    if planned is None:
        lines.append(
            f"wall time (rough): {duration(trunk_s + lineage_s)} (trunks {duration(trunk_s)}, then lineages "
            f"{duration(lineage_s)}), {slots} at a time on {machine.cpus} CPUs and {gpus_here}; assumes "
            f"{si(CPU_FLOPS_PER_THREAD, 'FLOP/s')} per CPU thread, {si(GPU_FLOPS, 'FLOP/s')} per GPU "
            f"(x{BF16_GPU_SPEEDUP:g} in bf16){launches}, no time lost to data loading; bound by {trained} (analysis off)"
        )
    else:
        beside = analysis_side(planned, twins)
        bound = "analysis" if beside > lineage_s else trained
        lines += [
            f"analysis (rough): {sum(count for _, count in measurements)} measurements (every round of every "
            f"lineage, each trunk's reference and noise floor), ~{duration(planned.per_round)} each on "
            f"{planned.device}: {duration(analysis_s)} on {planned.actors} actor(s) at a time",
        ]
        if twins:
            added = max(lineage_s, beside) - max(lineage_s, analysis_s)
            shared = machine.cpus if analysis.cpus_per_actor == 0 and actor_gpus == 0 else 0
            lines.append(twin_line(twins, total_flops, added, shared, si, duration))
        lines += [
            f"wall time (rough): {duration(trunk_s + max(lineage_s, beside))} (trunks {duration(trunk_s)}, "
            f"then lineages {duration(lineage_s)} of training, {slots} at a time, beside {duration(beside)} of "
            f"analysis{' and dense twins' if twins else ''}) on {machine.cpus} CPUs and {gpus_here}; bound by {bound}"
            + (": more analysis actors (analysis.actors) or GPUs for them (analysis.gpus_per_actor) would shorten it"
               if bound == "analysis" else "")
            + f"; assumes {si(CPU_FLOPS_PER_THREAD, 'FLOP/s')} per CPU thread, {si(GPU_FLOPS, 'FLOP/s')} per GPU "
            f"(x{BF16_GPU_SPEEDUP:g} in bf16) for training{launches}, {si(ANALYSIS_GPU_FLOPS, 'FLOP/s')} per analysis GPU, "
            "no time lost to data loading",
        ]
        if analysis.cpus_per_actor == 0 and actor_gpus == 0:
            start.append(
                "analysis.cpus_per_actor is 0: the actors share the trials' cores, so training and analysis "
                "both run slower than estimated when the cores are busy"
            )
    lines.append(fixed.line(len(lineages), duration))
    return lines + [f"note: {note}" for note in start + notes([s for s, _ in trunks], cpus, gpus)]
