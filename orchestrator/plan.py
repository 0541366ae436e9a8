"""The plan of a sweep: its lineages, the trunks they share, and the sweep's own id."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from orchestrator.config import SweepConfig, expand_lineages, unique_trunks
from trainables.specs import LineageSpec, TrunkSpec


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

    def describe(self) -> str:
        lines = [
            f"sweep {self.config.name} ({self.sweep_id}): {len(self.trunks)} trunk(s), "
            f"{len(self.lineages)} lineage(s), {self.total_rounds} rounds",
            "trunks:",
        ]
        for trunk_id, (spec, rewinds) in self.trunks.items():
            lines.append(
                f"  {trunk_id}  {spec.model.name} on {spec.data.name} seed {spec.seed}, "
                f"{spec.train.epochs} epochs ({spec.total_iterations()} iterations), rewind snapshots {list(rewinds)}"
            )
        lines.append("lineages:")
        width = max(len(display_name(spec)) for spec in self.lineages)
        for spec in self.lineages:
            p = spec.pruning
            final = 1 - (1 - p.rate) ** p.rounds
            lines.append(
                f"  {spec.id}  {display_name(spec):{width}s}  trunk {spec.trunk.id}  {p.rounds} rounds x {p.rate:.0%} "
                f"{p.scope} -> {final:.1%} sparse"
            )
        return "\n".join(lines)


def display_name(spec: LineageSpec) -> str:
    return f"{spec.pruning.label} s{spec.trunk.seed}"


def make_plan(config: SweepConfig) -> SweepPlan:
    lineages = expand_lineages(config)
    return SweepPlan(config, lineages, unique_trunks(lineages))
