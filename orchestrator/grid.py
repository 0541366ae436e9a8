"""The grid: a sweep config's sections (data, model, train, pruning) and seeds expanded into its
lineages. The grid is counted before it is expanded (`max_lineages`), every grid point is validated
as the spec it becomes and every lineage as a whole, and errors name the entry (`pruning[1].rate`)."""
from __future__ import annotations

import itertools
import math
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from lth_sweep.orchestrator.config import EMPTY_LIST, GRID_SECTIONS, SweepConfig
from lth_sweep.orchestrator.config_errors import (
    ConfigError,
    error_items,
    format_errors,
    Problems,
    short_repr,
    shown,
    non_finite,
    questionable,
)
from lth_sweep.orchestrator.labels import distinct_labels
from lth_sweep.trainables.pruning import PRUNING_METHODS
from lth_sweep.trainables.specs import LineageSpec, TrunkSpec


#: The smallest pruning rate: below 0.1% a round, the smallest layers of the built-in models (108 to
#: 1,728 weights) lose not one weight a round, and 100 rounds stay under 10% sparsity, far from where
#: lottery tickets are studied (the papers prune 5-20% a round): a lineage that prunes nothing.
MIN_RATE = 1e-3


def _rate_problems(spec: BaseModel) -> list[str]:
    rate = getattr(spec, "rate", None)
    if rate is None or rate >= MIN_RATE:
        return []
    return [f"rate: {rate:g} is below {MIN_RATE:g}, so small that a round prunes next to nothing (not one weight of a "
            f"layer of a thousand); the papers prune 0.05 to 0.2 a round"]


def _is_list_field(annotation) -> bool:
    origins = {typing.get_origin(a) for a in [annotation, *typing.get_args(annotation)]}
    return bool(origins & {list, tuple}) or annotation in (list, tuple)


def _spec_class(section: str, entry: dict) -> type[BaseModel]:
    """The spec an entry of `section` is validated as (for `pruning`, its method's; imp by default)."""
    if section != "pruning":
        return GRID_SECTIONS[section]
    method = entry.setdefault("method", "imp")
    if not isinstance(method, str) or method not in PRUNING_METHODS:
        raise ValueError(f".method: unknown pruning method {short_repr.repr(method)}; known: {', '.join(PRUNING_METHODS)}")
    return PRUNING_METHODS[method].Spec


@dataclass
class SectionEntry:
    """One entry of a grid section (one method of a `method: [...]` entry) and its grid axes."""

    section: str
    index: int | None  # its place in a list section; None where the section is one mapping
    spec: type[BaseModel]
    axes: list[list[tuple[str, Any]]]

    @property
    def where(self) -> str:
        return self.section if self.index is None else f"{self.section}[{self.index}]"

    @property
    def size(self) -> int:
        return math.prod(len(axis) for axis in self.axes)

    def points(self):
        return (dict(combo) for combo in itertools.product(*self.axes))


def section_entries(raw, section: str, problems: Problems) -> list[SectionEntry]:
    """The entries of a section with their axes, nothing expanded yet: a list value of a field
    that is not itself a list is an axis. In `pruning`, a list of methods makes one entry per
    method, since each method has its own fields."""
    entries = raw if isinstance(raw, list) else [raw]
    out = []
    for index, entry in enumerate(entries):
        index = index if isinstance(raw, list) else None
        if not isinstance(entry, dict):
            problems.add(section, index, f": expected a mapping of fields, got {shown(entry)}")
            continue
        methods = entry.get("method") if section == "pruning" else None
        if isinstance(methods, list) and not methods:
            problems.add(section, index, f".method: {EMPTY_LIST}")
            continue
        for variant in methods if isinstance(methods, list) else [None]:
            fields = dict(entry) if variant is None else {**entry, "method": variant}
            try:
                spec = _spec_class(section, fields)
            except ValueError as error:
                problems.add(section, index, str(error))
                continue
            axes = []
            for key, value in fields.items():
                known = spec.model_fields.get(key)
                swept = isinstance(value, list) and known is not None and not _is_list_field(known.annotation)
                if swept and not value:
                    problems.add(section, index, f".{key}: {EMPTY_LIST}")
                axes.append([(key, v) for v in value] if swept else [(key, value)])
            out.append(SectionEntry(section, index, spec, axes))
    return out


def expand_section(raw, section: str) -> list[dict]:
    """All grid points of one section, as raw dicts (validated later)."""
    problems = Problems({section: len(raw)} if isinstance(raw, list) else {})
    entries = section_entries(raw, section, problems)
    problems.raise_any()
    return [point for entry in entries for point in entry.points()]


def _list_sizes(config: SweepConfig) -> dict[str, int]:
    return {name: len(getattr(config, name)) for name in GRID_SECTIONS if isinstance(getattr(config, name), list)}


def grid_entries(config: SweepConfig) -> dict[str, list[SectionEntry]]:
    problems = Problems(_list_sizes(config))
    sections = {name: section_entries(getattr(config, name), name, problems) for name in GRID_SECTIONS}
    problems.raise_any()
    return sections


def check_grid_size(config: SweepConfig, sections: dict[str, list[SectionEntry]]) -> int:
    """The number of grid points, counted (not expanded); refused above `config.max_lineages`."""
    sizes = {"seeds": len(config.seeds)} | {name: sum(e.size for e in entries) for name, entries in sections.items()}
    total = math.prod(sizes.values())
    if total > config.max_lineages:
        factors = " x ".join(f"{size:,} {name}" for name, size in sizes.items())
        raise ConfigError(
            f"max_lineages: the grid expands to {total:,} lineages ({factors}), more than max_lineages="
            f"{config.max_lineages:,}. Shrink the grid, or raise the limit with `max_lineages: N` in the config "
            f"(or --set max_lineages=N)"
        )
    return total


def expand_lineages(config: SweepConfig, check_paths: bool = True) -> list[LineageSpec]:
    """Every lineage of the grid, validated; `check_paths=False` (a dry run) does not require
    data or weights files to exist, it only resolves their paths."""
    sections = grid_entries(config)
    check_grid_size(config, sections)
    context = {"check_paths": check_paths}
    problems = Problems(_list_sizes(config))
    validated: dict[str, list[tuple[SectionEntry, BaseModel]]] = {name: [] for name in sections}
    for name, entries in sections.items():
        for entry in entries:
            for point in entry.points():
                found = questionable(point, entry.spec, "")
                if not found:
                    try:
                        spec = entry.spec.model_validate(point, context=context)
                    except ValidationError as error:
                        found = [f"{loc}: {msg}" if loc else f": {msg}" for loc, msg in error_items(error)]
                    else:
                        found = [line.removeprefix(".") for line in non_finite(spec, "")]
                        found += _rate_problems(spec) if name == "pruning" else []
                        validated[name].append((entry, spec))
                for line in found:
                    problems.add(name, entry.index, f".{line}" if not line.startswith(":") else line)
    problems.raise_any()
    lineages = {}
    for seed, (_, data), (_, model), (_, train), (entry, pruning) in itertools.product(config.seeds, *validated.values()):
        raw = {"trunk": {"data": data, "model": model, "train": train, "seed": seed}, "pruning": pruning}
        try:
            spec = LineageSpec.model_validate(raw, context=context)
        except ValidationError as error:
            for line in format_errors(error):
                line = line.replace("trunk.", "", 1)
                section = next((s for s in GRID_SECTIONS if line.startswith(s + ".")), None)
                if section == "pruning":
                    problems.add("pruning", entry.index, line[len("pruning"):])
                else:
                    problems.add("", None, line)
            continue
        lineages.setdefault(spec.id, spec)
    problems.raise_any()
    return distinct_labels(list(lineages.values()))


def unique_trunks(lineages: list[LineageSpec]) -> dict[str, tuple[TrunkSpec, tuple[int, ...]]]:
    """Trunk id -> (trunk spec, the rewind iterations its lineages need), in first-seen order."""
    trunks: dict[str, tuple[TrunkSpec, set[int]]] = {}
    for lineage in lineages:
        spec, rewinds = trunks.setdefault(lineage.trunk.id, (lineage.trunk, set()))
        rewinds.add(lineage.pruning.rewind_iteration)
    return {tid: (spec, tuple(sorted(r))) for tid, (spec, r) in trunks.items()}
