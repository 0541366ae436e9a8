"""The plan of a sweep: its lineages, the trunks they share, the sweep's own id, and (for
`--dry-run`) what it will cost and ask Ray for (`orchestrator.estimate`)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lth_sweep.orchestrator import estimate
from lth_sweep.orchestrator.config import SweepConfig
from lth_sweep.orchestrator.config_errors import ConfigError
from lth_sweep.orchestrator.grid import expand_lineages, unique_trunks
from lth_sweep.trainables.data.describe import describe
from lth_sweep.trainables.specs import LineageSpec, TrunkSpec
from lth_sweep.trainables.trial_payload import display_name as lineage_name
from lth_sweep.trainables.ticket_sharing import shared_tickets, takes_ticket


@dataclass
class SweepPlan:
    config: SweepConfig
    lineages: list[LineageSpec]
    trunks: dict[str, tuple[TrunkSpec, tuple[int, ...]]]

    @property
    def sweep_id(self) -> str:
        key = self.config.name + ":" + ",".join(sorted(spec.id for spec in self.lineages))
        if self.config.analysis.enabled:  # what is measured is part of what the sweep is
            key += ":analysis=" + self.config.analysis.id
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    @property
    def total_rounds(self) -> int:
        return sum(spec.pruning.rounds for spec in self.lineages)

    @property
    def validation_every(self) -> int:
        return validation_every(self.config)

    def describe(self, machine: "estimate.Machine | None" = None) -> str:
        """The plan, each trunk and lineage with its compute, then resources and a wall-time estimate
        on `machine` (default: this one)."""
        trunk_costs = {tid: estimate.trunk_cost(spec) for tid, (spec, _) in self.trunks.items()}
        shared = shared_tickets(self.lineages)
        takers = {spec.id for spec in self.lineages if takes_ticket(spec, shared)}
        lineage_costs = {
            spec.id: estimate.lineage_cost(spec, self.validation_every, trains_ticket=spec.id not in takers)
            for spec in self.lineages
        }
        lines = [
            f"sweep {self.config.name} ({self.sweep_id}): {len(self.trunks)} trunk(s), "
            f"{len(self.lineages)} lineage(s), {self.total_rounds} rounds",
            "trunks:",
        ]
        for trunk_id, (spec, rewinds) in self.trunks.items():
            data, cost = describe(spec.data), trunk_costs[trunk_id]
            macs = estimate.forward_macs(spec.model, data)
            lines.append(
                f"  {trunk_id}  {spec.model.name} on {spec.data.name} seed {spec.seed}, "
                f"{spec.train.epochs} epochs ({spec.total_iterations()} iterations), rewind snapshots {list(rewinds)}"
            )
            lines.append(
                f"                {data.channels}x{data.size}x{data.size}, {data.classes} classes"
                f"{' (assumed)' if 'classes' in data.assumed else ''}, "
                f"{'?' if macs is None else estimate.si(macs)} MACs/image x {estimate.si(cost.images)} images "
                f"-> {estimate.si(cost.flops, 'FLOP')}"
            )
        lines.append("lineages:")
        width = max(len(display_name(spec)) for spec in self.lineages)
        for spec in self.lineages:
            p, cost = spec.pruning, lineage_costs[spec.id]
            final = 1 - (1 - p.rate) ** p.rounds
            lines.append(
                f"  {spec.id}  {display_name(spec):{width}s}  trunk {spec.trunk.id}  {p.rounds} rounds x {p.rate:.0%} "
                f"{p.scope} -> {final:.1%} sparse; {estimate.si(cost.iterations)} iterations "
                f"-> {estimate.si(cost.flops, 'FLOP')}"
                + ("; its tickets shared with the method's other lineages (trained once)" if spec.id in takers else "")
            )
        lineage_trunks = [(spec.trunk, lineage_costs[spec.id]) for spec in self.lineages]
        trunks = [(spec, trunk_costs[tid]) for tid, (spec, _) in self.trunks.items()]
        return "\n".join(lines + estimate.report(self.config, trunks, lineage_trunks, self.measurements(), machine, rounds=self.total_rounds))

    def measurements(self) -> list[tuple[TrunkSpec, int]]:
        """What the analysis actors measure: each lineage's rounds, and each trunk's dense reference
        plus, when another seed of its configuration is in the sweep, its noise floor."""
        configurations: dict[str, int] = {}
        for spec, _ in self.trunks.values():
            key = spec.model_copy(update={"seed": 0}).id
            configurations[key] = configurations.get(key, 0) + 1
        trunks = [
            (spec, 1 + (configurations[spec.model_copy(update={"seed": 0}).id] > 1)) for spec, _ in self.trunks.values()
        ]
        return [(spec.trunk, spec.pruning.rounds) for spec in self.lineages] + trunks


def display_name(spec: LineageSpec) -> str:
    return lineage_name(spec.pruning.label, spec.trunk.seed)


def check_devices(config: SweepConfig, lineages: list[LineageSpec]) -> None:
    """Ray gives GPUs only to tasks that ask for them, and a reserved GPU nobody uses is waste."""
    gpus = config.resources.gpus_per_trial
    devices = {spec.trunk.train.device for spec in lineages}
    if "cuda" in devices and not gpus:
        raise ConfigError("train.device: cuda needs resources.gpus_per_trial > 0 (Ray gives GPUs to trials that ask)")
    if gpus and devices == {"cpu"}:
        raise ConfigError(
            f"resources.gpus_per_trial: {gpus:g} reserves GPUs that train.device=cpu never uses; set train.device=auto"
        )


def check_models(lineages: list[LineageSpec], check_paths: bool = True) -> None:
    """Each trunk's model takes the options its spec sets (`width`, `weights`), and, unless a dry
    run (`check_paths=False`), its `model.weights` file is a weights file the loader reads, whose
    keys and shapes fit the model built for the trunk's data: the model is built on the CPU with
    the file loaded, as the trunk will build it, so what passes here loads there."""
    from lth_sweep.trainables.models import check_options

    with_weights = {}
    for spec in lineages:
        model = spec.trunk.model
        try:
            check_options(model)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if model.weights is not None and check_paths:
            data = describe(spec.trunk.data)
            with_weights.setdefault((model, data.channels, data.size, data.classes), None)
    if not with_weights:
        return
    import torch

    from lth_sweep.trainables.models import build_model

    for model, channels, size, classes in with_weights:
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():  # the driver's RNG stays as it was
                build_model(model, in_channels=channels, image_size=size, num_classes=classes)
        except ValueError as error:
            message = str(error)
            raise ConfigError(message if message.startswith("model.") else f"model: {message}") from None
        except RuntimeError as error:  # e.g. torch refusing a tensor the checks above let through
            reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise ConfigError(f"model.weights: {model.weights} cannot be loaded into {model.name}: {reason}") from None


def validation_every(config: SweepConfig) -> int:
    """Iterations between validation losses of the early-stopping measure (0: not measured)."""
    analysis = config.analysis
    return analysis.early_stopping_every if analysis.enabled else 0


def with_validation(spec: LineageSpec, config: SweepConfig) -> LineageSpec:
    """The lineage whose data has a validation split for the early-stopping measure, of
    `analysis.early_stopping_images` (the test split's size if unset) images, unless the config
    sized it itself (`data.validation_size`). Held out of train, it is part of the trunk's id."""
    data = spec.trunk.data
    if data.validation_size:
        return spec
    data = data.model_copy(update={"validation_size": config.analysis.early_stopping_images or data.test_size})
    return spec.model_copy(update={"trunk": spec.trunk.model_copy(update={"data": data})})


def make_plan(config: SweepConfig, check_paths: bool = True) -> SweepPlan:
    """`check_paths=False` (a dry run) plans without the data or weights files being there (and
    so without checking that the weights fit the model)."""
    lineages = expand_lineages(config, check_paths=check_paths)
    if validation_every(config):
        lineages = [with_validation(spec, config) for spec in lineages]
    check_devices(config, lineages)
    check_models(lineages, check_paths=check_paths)
    return SweepPlan(config, lineages, unique_trunks(lineages))
