"""The sweep file: a pydantic schema whose sections (data, model, train, pruning) become a grid.

In a section, a list where the schema expects one value is an axis of the grid; a section may also
be a list of whole entries (one per set-up, e.g. one per pruning method). `seeds` is an axis too.
Every entry's grid points are validated as the spec they become, and every lineage as a whole, so
an error names the field and the entry it is about (`pruning[1].rate`).

Before anything is validated, the file is bounded: its expanded size (YAML aliases count at every
use; `$LTH_MAX_CONFIG_NODES`), and the grid's size (`max_lineages`), counted before it is expanded.
Duplicate keys, empty sections, non-finite numbers and booleans where a number is meant are
refused rather than read some way.

This module holds the schema and loads a file into it; the grid is expanded in orchestrator.grid,
YAML is read in orchestrator.config_yaml, and messages and value checks are in
orchestrator.config_errors.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analysis.analysis_spec import AnalysisSpec
from orchestrator.config_errors import ConfigError, _format_errors, _shown, non_finite, questionable
from orchestrator.config_yaml import parse_yaml
from orchestrator.tracking_store import resolve_uri
from trainables.specs import DataSpec, ModelSpec, TrainSpec

GRID_SECTIONS: dict[str, type[BaseModel] | None] = {
    "data": DataSpec,
    "model": ModelSpec,
    "train": TrainSpec,
    "pruning": None,  # the spec of the entry's method (see _spec_class)
}


DEFAULT_MAX_LINEAGES = 10_000
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
EMPTY_LIST = "an empty list sweeps over nothing"


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
    rerun_stale: bool = Field(
        False, description="train again the finished trunks and lineages another lth-sweep version made (`--rerun-stale`)"
    )

    def resolved_uri(self, base: Path) -> str:
        """An absolute URI: trials do not run where `lth` was started."""
        return resolve_uri(self.uri, base)


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN, description="the sweep's name; `load_config` defaults it to the file's stem")
    max_lineages: int = Field(
        DEFAULT_MAX_LINEAGES, ge=1, description="refuse a grid of more lineages than this (counted before expanding it)"
    )
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
        if isinstance(value, list) and not value:
            raise ValueError(f"{EMPTY_LIST}; give at least one seed, or leave seeds out for [0]")
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator(*GRID_SECTIONS, mode="before")
    @classmethod
    def _a_section_or_a_list_of_entries(cls, value, info):
        if isinstance(value, list) and not value:
            raise ValueError(f"{EMPTY_LIST}; give at least one entry, or leave {info.field_name} out for the defaults")
        if not isinstance(value, (dict, list)):
            raise ValueError(f"expected a mapping of fields, or a list of them (one entry per set-up), got {_shown(value)}")
        return value

    def storage_path(self, base: Path) -> str:
        if "://" in self.storage:
            return self.storage
        return str((base / Path(self.storage).expanduser()).resolve())


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
    value = parse_yaml(text, f"--set {key}")
    targets, parts = [raw], key.split(".")
    for part in parts[:-1]:
        targets = [child for target in targets for child in _select(target, part, key)]
        if not all(isinstance(t, dict) for t in targets):
            raise ConfigError(f"--set {key}: {part} is not a section")
    for target in targets:
        target[parts[-1]] = value


def _name_from(path: Path) -> str:
    """A config without `name` is named after its file (`my-sweep.yaml` -> my-sweep), never
    after another sweep: two files without names must not share one sweep in MLflow."""
    if not re.match(NAME_PATTERN, path.stem):
        raise ConfigError(
            f"name: not set, and the file name {path.stem!r} cannot stand for it (letters, digits, '_', '.' "
            f"and '-' only); set `name:` in {path}"
        )
    return path.stem


def load_config(path: str | Path | None, overrides: list[str] = ()) -> SweepConfig:
    if path is None:
        path = Path(__file__).with_name("quickstart.yaml")
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read ({error})") from None
    raw = parse_yaml(text, str(path))
    if raw is None:
        raise ConfigError(
            f"{path}: the file is empty (nothing but comments or whitespace): a sweep config sets at least "
            "one of name, data, model, train, pruning, seeds; run `lth sweep` without a file for the quickstart"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    if "name" not in raw:
        raw["name"] = _name_from(path)
    return config_from_dict(raw, overrides)


def config_from_dict(raw: dict, overrides: list[str] = ()) -> SweepConfig:
    """A sweep config from the mapping a YAML file holds (e.g. built in a notebook), judged as
    strictly as a file: `overrides` as `--set` takes them, then the same checks."""
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of the config's sections, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    for assignment in overrides:
        apply_override(raw, assignment)
    problems = questionable(raw, SweepConfig, "")
    if problems:
        raise ConfigError("\n".join(problems))
    try:
        config = SweepConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError("\n".join(_format_errors(error))) from None
    problems = [
        line
        for name in type(config).model_fields
        if name not in GRID_SECTIONS
        for line in non_finite(getattr(config, name), name)
    ]
    if problems:
        raise ConfigError("\n".join(problems))
    return config
