"""One label per pruning entry of a sweep. Verdicts, tables, colours and `lth export --label` group
lineages by label (with their trunk configuration and seed): two entries under one label, say imp
at rates 0.2 and 0.5, would be pooled round by round as if they were seeds of one method. Entries
that would share a label get one naming what differs (`imp rate=0.2`, `imp rate=0.5`); entries the
user named (`name:`) must not share one."""
from __future__ import annotations

import json

from lth_sweep.orchestrator.config_errors import ConfigError
from lth_sweep.trainables.specs import LineageSpec

NAME_FIELD = "name"


def distinct_labels(lineages: list[LineageSpec]) -> list[LineageSpec]:
    by_label: dict[str, dict[str, object]] = {}  # label -> {pruning canonical: pruning spec}
    for spec in lineages:
        by_label.setdefault(spec.pruning.label, {})[spec.pruning.canonical()] = spec.pruning
    names: dict[str, str] = {}  # pruning canonical -> its label
    for label, entries in by_label.items():
        if len(entries) < 2:
            continue
        dumps = {key: entry.model_dump(mode="json", exclude={NAME_FIELD}) for key, entry in entries.items()}
        fields = [f for f in dict.fromkeys(k for d in dumps.values() for k in d)
                  if len({json.dumps(d.get(f), sort_keys=True) for d in dumps.values()}) > 1]
        if any(entry.name for entry in entries.values()):
            raise ConfigError(
                f"pruning: {len(entries)} entries share the label {label!r} but differ in {', '.join(fields)}: "
                "give each its own `name` (verdicts would pool them as one method)"
            )
        for key, dump in dumps.items():
            names[key] = f"{label} " + ",".join(f"{f}={shown(dump.get(f))}" for f in fields)
    if not names:
        return lineages
    return [
        spec.model_copy(update={"pruning": spec.pruning.model_copy(update={NAME_FIELD: names[spec.pruning.canonical()]})})
        if spec.pruning.canonical() in names else spec
        for spec in lineages
    ]


def shown(value) -> str:
    if isinstance(value, list):
        return "[" + ",".join(shown(v) for v in value) + "]"
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
