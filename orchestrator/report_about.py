"""The report's first sections: the sweep and its MLflow run, the provenance of its runs, and its
config, as the record holds them."""
from __future__ import annotations

import re
from collections import Counter
from datetime import datetime

from lth_sweep.orchestrator.report_record import SweepFacts
from lth_sweep.orchestrator.report_render import Markdown, Preformatted, table
from lth_sweep.trainables import record

#: The provenance columns: (header, tag) as every run records them (trainables/provenance.py).
PROVENANCE = (
    ("lth-sweep", record.VERSION_LTH_SWEEP), ("git commit", record.GIT_COMMIT), ("checkout", record.SOURCE_DIRTY),
    ("torch", record.VERSION_TORCH), ("ray", record.VERSION_RAY), ("mlflow", record.VERSION_MLFLOW),
    ("python", record.VERSION_PYTHON),
)


def when(ms: int | float | None) -> str:
    return "-" if not ms else datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def shown(uri: str) -> str:
    """A store's URI without its password (`postgresql://user:secret@host/db`): the report is shared."""
    return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", uri)


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """The run in MLflow's UI: the tracking server's own, else where `lth ui` serves it (as
    `SweepTracker.run_url` links it at the end of a sweep)."""
    server = shown(uri).rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{server}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def about(facts: SweepFacts) -> str:
    info = facts.parent.info
    url = run_url(facts.uri, info.experiment_id, info.run_id)
    served = "" if facts.uri.startswith(("http://", "https://")) else f" (with `lth ui --backend-store-uri {shown(facts.uri)}` running)"
    ran = f"{when(info.start_time)} to {when(info.end_time)}" if info.end_time else f"since {when(info.start_time)} (not ended)"
    if info.end_time and info.start_time:
        ran += f" ({_duration((info.end_time - info.start_time) / 1000)})"
    statuses = Counter(run.status for run in facts.sweep.lineages)
    lineages = f"{len(facts.sweep.lineages)} (" + ", ".join(f"{n} {status.lower()}" for status, n in sorted(statuses.items())) + ")"
    rows = [
        ["sweep", f"`{facts.name}`"], ["sweep id", f"`{facts.sweep_id}`"],
        ["parent run", f"`{info.run_id}` ({info.status})"], ["MLflow", f"[{url}]({url}){served}"],
        ["tracking store", f"`{shown(facts.uri)}`, experiment `{facts.experiment}`"], ["ran", ran],
        ["trunks", str(len(facts.sweep.trunks))], ["lineages", lineages],
    ]
    return table(["", ""], rows)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def provenance(facts: SweepFacts) -> str:
    """One row per combination of versions among the sweep's runs (one row where one install made them all)."""
    runs = [(record.SWEEP_KIND, facts.parent.data.tags)]
    runs += [(record.TRUNK_KIND, run.tags) for run in facts.sweep.trunks.values()]
    runs += [(record.LINEAGE_KIND, run.tags) for run in facts.sweep.lineages]
    combinations: dict[tuple, Counter] = {}
    for kind, tags in runs:
        combinations.setdefault(tuple(_provenance_cell(tag, tags) for _, tag in PROVENANCE), Counter())[kind] += 1
    rows = [[", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in kinds.items()), *key] for key, kinds in combinations.items()]
    note = "" if len(rows) == 1 else "\n\nThe runs were made by different installs: see `lth.notes` on each run."
    return table(["runs", *(header for header, _ in PROVENANCE)], rows) + note


def _provenance_cell(tag: str, tags: dict) -> str:
    value = tags.get(tag)
    if tag == record.SOURCE_DIRTY:
        return {"true": "uncommitted changes", "false": "clean"}.get(value, "-")
    return "unknown" if value is None else f"`{value}`"


def config(facts: SweepFacts) -> list:
    params = {key: shown(value) for key, value in facts.parent.data.params.items() if not key.startswith("lth.")}
    if not params:
        return [Markdown("The parent run records no config (no params).")]
    return [Markdown("The sweep's config, as its parent run's params record it:"), Preformatted(config_text(params))]


def config_text(params: dict[str, str]) -> str:
    """Flat params (`train.lr`) as indented YAML-like text, `name` first."""
    tree: dict = {}
    for key in sorted(params, key=lambda key: (key != "name", key)):
        *folders, leaf = key.split(".")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = params[key]
    return "\n".join(_yaml_lines(tree, 0))


def _yaml_lines(tree: dict, depth: int) -> list[str]:
    lines = []
    for key, value in tree.items():
        if isinstance(value, dict):
            lines += [f"{'  ' * depth}{key}:", *_yaml_lines(value, depth + 1)]
        else:
            lines.append(f"{'  ' * depth}{key}: {value}")
    return lines
