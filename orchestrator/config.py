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

from lth_sweep.analysis.analysis_spec import AnalysisSpec
from lth_sweep.orchestrator.config_errors import ConfigError, format_errors, short_repr, shown, non_finite, questionable
from lth_sweep.orchestrator.config_yaml import parse_yaml, read_config_text
from lth_sweep.orchestrator.tracking_store import resolve_uri
from lth_sweep.trainables.specs import DataSpec, ModelSpec, TrainSpec

GRID_SECTIONS: dict[str, type[BaseModel] | None] = {
    "data": DataSpec,
    "model": ModelSpec,
    "train": TrainSpec,
    "pruning": None,  # the spec of the entry's method (see _spec_class)
}


DEFAULT_MAX_LINEAGES = 10_000
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
#: The sweep's folder under `storage` is `<name>-<12-hex sweep id>`, one path component (Ray Tune's
#: experiment folder; lineage folders under it are named by their own ids): 128 + 13 bytes stays within
#: every common filesystem's 255-byte limit on a name, and eCryptfs's 143.
MAX_NAME_LENGTH = 128
#: Seeds seed torch (64 bits) and derive each round's generator as seed * 1,000,003 + ..., which
#: must fit 64 bits too; 32 bits leaves room for that and is what NumPy's legacy seeding takes.
MAX_SEED = 2**32 - 1
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
    experiment: str = Field("lth-sweep", description="the MLflow experiment the sweep's runs go to")
    rerun_stale: bool = Field(
        False, description="train again the finished trunks and lineages another lth-sweep version made (`--rerun-stale`)"
    )

    @field_validator("experiment")
    @classmethod
    def _experiment_is_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(f"an empty name ({value!r}): MLflow names every experiment; leave it out for 'lth-sweep'")
        return value

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

    @field_validator("name")
    @classmethod
    def _name_fits_a_folder_name(cls, value: str) -> str:
        if len(value) > MAX_NAME_LENGTH:
            raise ValueError(
                f"{len(value)} characters, more than {MAX_NAME_LENGTH}: the sweep's folder under `storage` is named "
                f"after it (`<name>-<sweep id>`), and a file name has at most 255 bytes"
            )
        return value

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
            raise ValueError(f"expected a mapping of fields, or a list of them (one entry per set-up), got {shown(value)}")
        return value

    def storage_path(self, base: Path) -> str:
        if "://" in self.storage:
            return self.storage
        return str((base / Path(self.storage).expanduser()).resolve())


_KEY_PART = re.compile(r"([^.\[\]]+)(?:\[(\d+)\])?")


def _key_parts(key: str) -> list[tuple[str, int | None]]:
    """`pruning[2].rewind` -> [("pruning", 2), ("rewind", None)]; a part that is empty or not
    NAME / NAME[INDEX] is refused, named."""
    pieces = key.split(".")
    parts = []
    for position, piece in enumerate(pieces):
        if not piece:
            where = "between two dots"
            where = "before the first dot" if position == 0 else "after the last dot" if position == len(pieces) - 1 else where
            raise ConfigError(f"--set {key}: an empty key {where}; expected KEY=VALUE, e.g. train.epochs=2")
        match = _KEY_PART.fullmatch(piece)
        if match is None:
            raise ConfigError(f"--set {key}: {piece!r} is not NAME or NAME[INDEX] (e.g. --set \"pruning[2].rewind=20\")")
        parts.append((match[1], None if match[2] is None else int(match[2])))
    return parts


def _entry(target: dict, name: str, index: int, key: str) -> list:
    """The list `target[name]`, which must have an entry `index`."""
    child = target.get(name)
    if not isinstance(child, list) or index >= len(child):
        size = f"a list of {len(child)}" if isinstance(child, list) else "not a list section"
        raise ConfigError(f"--set {key}: {name}[{index}] does not name an entry of a list section ({name} is {size})")
    return child


def _select(target: dict, name: str, index: int | None, key: str) -> list:
    """The children a key's part names: `name` (every entry, if it is a list) or `name[i]` (entry i)."""
    if index is not None:
        return [_entry(target, name, index, key)[index]]
    child = target.setdefault(name, {})
    return child if isinstance(child, list) else [child]


def apply_override(raw: dict, assignment: str) -> None:
    """`key.sub=value`, value parsed as YAML. Inside a list section it sets every entry, unless
    the entry is named: `pruning[2].rewind=20`."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. train.epochs=2")
    parts = _key_parts(key)
    value = parse_yaml(text, f"--set {key}")
    targets = [raw]
    for name, index in parts[:-1]:
        targets = [child for target in targets for child in _select(target, name, index, key)]
        if not all(isinstance(t, dict) for t in targets):
            raise ConfigError(f"--set {key}: {name} is not a section")
    name, index = parts[-1]
    for target in targets:
        if index is None:
            target[name] = value
        else:
            _entry(target, name, index, key)[index] = value


def _name_from(path: Path) -> str:
    """A config without `name` is named after its file (`my-sweep.yaml` -> my-sweep), never
    after another sweep: two files without names must not share one sweep in MLflow."""
    rule = None
    if not re.match(NAME_PATTERN, path.stem):
        rule = "letters, digits, '_', '.' and '-' only"
    elif len(path.stem) > MAX_NAME_LENGTH:
        rule = f"{len(path.stem)} characters, more than {MAX_NAME_LENGTH}"
    if rule:
        stem = short_repr.repr(path.stem)
        raise ConfigError(f"name: not set, and the file name {stem} cannot stand for it ({rule}); set `name:` in {path}")
    return path.stem


def load_config(path: str | Path | None, overrides: list[str] = ()) -> SweepConfig:
    if path is None:
        path = Path(__file__).with_name("quickstart.yaml")
    path = Path(path)
    raw = parse_yaml(read_config_text(path), str(path))
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
        raise ConfigError("\n".join(format_errors(error))) from None
    problems = [
        line
        for name in type(config).model_fields
        if name not in GRID_SECTIONS
        for line in non_finite(getattr(config, name), name)
    ]
    problems += [
        f"seeds[{index}]: {seed} is outside 0 to {MAX_SEED}, the seeds torch and NumPy take (each round's generator "
        "is derived from the seed, and must fit 64 bits too)"
        for index, seed in enumerate(config.seeds)
        if not 0 <= seed <= MAX_SEED
    ]
    if problems:
        raise ConfigError("\n".join(problems))
    return config
