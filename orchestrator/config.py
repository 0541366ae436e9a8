"""The sweep file: a pydantic schema whose sections (data, model, train, pruning) become a grid.

In a section, a list where the schema expects one value is an axis of the grid; `pruning` may also
be a list of whole sections (one per method set-up). `seeds` is an axis too. Every grid point is
validated as the `LineageSpec` it becomes, so an error names the field it is about.
"""
from __future__ import annotations

import itertools
import os
import typing
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analysis.analysis_spec import AnalysisSpec
from trainables.pruning import PRUNING_METHODS
from trainables.specs import DataSpec, LineageSpec, ModelSpec, TrainSpec, TrunkSpec

GRID_SECTIONS: dict[str, type[BaseModel] | None] = {
    "data": DataSpec,
    "model": ModelSpec,
    "train": TrainSpec,
    "pruning": None,  # the spec of the entry's method (see _spec_class)
}


class ConfigError(Exception):
    """A config the user must fix; its message names the file and the field."""


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    max_concurrent_trials: int | None = Field(None, ge=1)
    max_failures: int = Field(2, ge=0, description="restarts of a failed trial from its last checkpoint")


class Scheduler(BaseModel):
    """Round-level early stopping of lineages, off by default. Tune sees each round's distance to
    the lineage's own trunk (`vs_trunk/<metric>`: the metric minus the dense value, signed so that
    higher is better), so lineages compare by how far they fell, whatever their trunk."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["none", "asha"] = Field("none", description="asha: Tune's ASHAScheduler with rounds as time")
    metric: Literal["test/acc", "test/loss"] = "test/acc"
    grace_rounds: int = Field(2, ge=1, description="rounds every lineage runs before ASHA may stop it")
    reduction_factor: float = Field(3.0, gt=1, description="ASHA keeps the top 1/reduction_factor at each rung")
    max_drop: float | None = Field(
        None, gt=0, description="also stop a lineage once its metric is this far below its trunk's (any kind)"
    )

    @property
    def enabled(self) -> bool:
        return self.kind != "none" or self.max_drop is not None


class Tracking(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uri: str | None = Field(None, description="MLflow tracking URI; default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    experiment: str = "lth-sweep"

    def resolved_uri(self, base: Path) -> str:
        """An absolute URI: trials do not run where `lth` was started."""
        uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            uri = "sqlite:///" + str((base / uri[len("sqlite:///") :]).resolve())
        return uri


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("quickstart", pattern=r"^[A-Za-z0-9_.-]+$")
    seeds: list[int] = Field([0], min_length=1)
    data: dict | list = Field(default_factory=dict)
    model: dict | list = Field(default_factory=dict)
    train: dict | list = Field(default_factory=dict)
    pruning: dict | list = Field(default_factory=dict)
    resources: Resources = Resources()
    scheduler: Scheduler = Scheduler()
    analysis: AnalysisSpec = AnalysisSpec()
    tracking: Tracking = Tracking()
    storage: str = Field(
        "lth-runs", description="Ray Tune checkpoints and trial logs: a local folder, or a URI (s3://...) on a cluster"
    )

    @field_validator("seeds", mode="before")
    @classmethod
    def _one_seed_is_a_list(cls, value):
        return [value] if isinstance(value, int) else value

    def storage_path(self, base: Path) -> str:
        if "://" in self.storage:
            return self.storage
        return str((base / Path(self.storage).expanduser()).resolve())


def _is_list_field(annotation) -> bool:
    origins = {typing.get_origin(a) for a in [annotation, *typing.get_args(annotation)]}
    return bool(origins & {list, tuple}) or annotation in (list, tuple)


def _spec_class(section: str, entry: dict) -> type[BaseModel]:
    if section != "pruning":
        return GRID_SECTIONS[section]
    method = entry.setdefault("method", "imp")
    if method not in PRUNING_METHODS:
        raise ConfigError(f"pruning.method: unknown pruning method {method!r}; known: {', '.join(PRUNING_METHODS)}")
    return PRUNING_METHODS[method].Spec


def expand_section(raw, section: str) -> list[dict]:
    """All grid points of one section, as raw dicts (validated later, as part of a lineage).

    A list value of a field that is not itself a list is a grid axis. In `pruning`, a list of
    methods is expanded first, since each method has its own fields."""
    entries = raw if isinstance(raw, list) else [raw]
    points = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            where = f"{section}[{index}]" if isinstance(raw, list) else section
            raise ConfigError(f"{where}: expected a mapping of fields, got {entry!r}")
        methods = entry.get("method") if section == "pruning" else None
        if isinstance(methods, list):
            points += expand_section([{**entry, "method": m} for m in methods], section)
            continue
        entry = dict(entry)
        fields = _spec_class(section, entry).model_fields
        axes = []
        for key, value in entry.items():
            field = fields.get(key)
            swept = isinstance(value, list) and field is not None and not _is_list_field(field.annotation)
            if swept and not value:
                raise ConfigError(f"{section}.{key}: an empty list sweeps over nothing")
            axes.append([(key, v) for v in value] if swept else [(key, value)])
        points += [dict(combo) for combo in itertools.product(*axes)]
    return points


def _format_errors(error: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for item in error.errors():
        # Drop pydantic's internal steps: validator names and the union tag (the method's name).
        parts = [str(p) for p in item["loc"] if not str(p).startswith("function-")]
        parts = [p for i, p in enumerate(parts) if not (i and parts[i - 1] == "pruning" and p in PRUNING_METHODS)]
        loc = ".".join(parts)
        msg = item["msg"].removeprefix("Value error, ")
        lines.append(f"{prefix}{loc}: {msg}" if loc else f"{prefix}{msg}")
    return lines


def expand_lineages(config: SweepConfig, check_paths: bool = True) -> list[LineageSpec]:
    """Every lineage of the grid, validated; `check_paths=False` (a dry run) does not require
    data or weights files to exist, it only resolves their paths."""
    sections = {name: expand_section(getattr(config, name), name) for name in GRID_SECTIONS}
    lineages, errors = {}, []
    for seed, data, model, train, pruning in itertools.product(config.seeds, *sections.values()):
        raw = {"trunk": {"data": data, "model": model, "train": train, "seed": seed}, "pruning": pruning}
        try:
            spec = LineageSpec.model_validate(raw, context={"check_paths": check_paths})
        except ValidationError as error:
            errors += [line.replace("trunk.", "", 1) for line in _format_errors(error)]
            continue
        lineages.setdefault(spec.id, spec)
    if errors:
        raise ConfigError("\n".join(dict.fromkeys(errors)))
    return list(lineages.values())


def _select(target: dict, part: str, key: str) -> list:
    """The children `part` names: `name` (every entry, if it is a list) or `name[i]` (entry i)."""
    name, bracket, index = part.partition("[")
    child = target.setdefault(name, {})
    if not bracket:
        return child if isinstance(child, list) else [child]
    if not isinstance(child, list) or not index.rstrip("]").isdigit() or int(index.rstrip("]")) >= len(child):
        raise ConfigError(f"--set {key}: {part} does not name an entry of a list section")
    return [child[int(index.rstrip("]"))]]


def apply_override(raw: dict, assignment: str) -> None:
    """`key.sub=value`, value parsed as YAML. Inside a list section it sets every entry, unless
    the entry is named: `pruning[2].rewind=20`."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. train.epochs=2")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {key}: value {text!r} is not valid YAML ({error})") from None
    targets, parts = [raw], key.split(".")
    for part in parts[:-1]:
        targets = [child for target in targets for child in _select(target, part, key)]
        if not all(isinstance(t, dict) for t in targets):
            raise ConfigError(f"--set {key}: {part} is not a section")
    for target in targets:
        target[parts[-1]] = value


def load_config(path: str | Path | None, overrides: list[str] = ()) -> SweepConfig:
    if path is None:
        path = Path(__file__).with_name("quickstart.yaml")
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read ({error})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError("\n".join(_format_errors(error))) from None


def unique_trunks(lineages: list[LineageSpec]) -> dict[str, tuple[TrunkSpec, tuple[int, ...]]]:
    """Trunk id -> (trunk spec, the rewind iterations its lineages need), in first-seen order."""
    trunks: dict[str, tuple[TrunkSpec, set[int]]] = {}
    for lineage in lineages:
        spec, rewinds = trunks.setdefault(lineage.trunk.id, (lineage.trunk, set()))
        rewinds.add(lineage.pruning.rewind_iteration)
    return {tid: (spec, tuple(sorted(r))) for tid, (spec, r) in trunks.items()}
