"""The report's content, section by section, as blocks (`report_render`): the sweep, its
provenance and config (`report_about`), then its figures, summary, verdicts and tickets."""
from __future__ import annotations

import re
import shlex
from datetime import datetime

from lth_sweep.orchestrator.report_about import about, config, provenance, when
from lth_sweep.orchestrator.report_figures import Figures
from lth_sweep.orchestrator.report_record import SweepFacts
from lth_sweep.orchestrator.report_render import Figure, Heading, Markdown, Preformatted, table


def document(facts: SweepFacts, figures: Figures, made_by: str) -> list:
    return [
        Heading(1, f"Sweep `{facts.name}`"),
        Markdown(about(facts)),
        Heading(2, "Provenance"), Markdown(provenance(facts)),
        Heading(2, "Config"), *config(facts),
        Heading(2, "Figures"), Markdown(f"Figures {figures.source}."),
        *(Figure(path, path.stem.replace("_", " ")) for path in figures.paths),
        Heading(2, "Summary"), *summary(facts),
        Heading(2, "Verdicts"), *verdicts(facts),
        Heading(2, "Tickets"), Markdown(tickets(facts)),
        Markdown(f"Made by `lth report` ({made_by}) on {when(datetime.now().timestamp() * 1000)}."),
    ]


def summary(facts: SweepFacts) -> list:
    from lth_sweep.orchestrator.summary import indistinct_columns, noise_floor_lines, render_markdown

    if not facts.rows:
        return [Markdown("No lineage of the sweep could be summarised." + _left_out(facts))]
    floor = {line for line in noise_floor_lines(facts.rows) if line.strip()}  # shown under the verdicts
    text = "\n".join(line for line in render_markdown(facts.rows, indistinct_columns(facts.verdicts)).splitlines() if line not in floor)
    return [Markdown(re.sub(r"\n{3,}", "\n\n", text) + _left_out(facts))]


def _left_out(facts: SweepFacts) -> str:
    return "" if not facts.left_out else "\n\nNot summarised: " + "; ".join(facts.left_out) + "."


def verdicts(facts: SweepFacts) -> list:
    from lth_sweep.analysis import paper_table
    from lth_sweep.analysis.sweep_verdicts_render import render
    from lth_sweep.orchestrator.summary import noise_floor_lines

    if facts.verdicts is None:
        return [Markdown(f"No verdicts: {facts.verdicts_failed}.")]
    blocks = [Markdown("Recomputed from the sweep's record, as `lth tickets --format markdown` judges it (the registry's "
                       "default metrics and margins, fixed before the data).")]
    for configuration in facts.verdicts["configurations"]:
        seeds = ", ".join(str(seed) for seed in configuration["seeds"])
        blocks += [Heading(3, f"Configuration `{configuration['config']}` (seeds {seeds})"),
                   Markdown(paper_table.markdown({**facts.verdicts, "configurations": [configuration]})),
                   Markdown(noise(configuration))]
    blocks.append(Markdown("\n\n".join(line for line in noise_floor_lines(facts.rows) if line.strip())))
    blocks.append(Preformatted(render(facts.verdicts), fold="The verdicts as `lth tickets` prints them: intervals, "
                               "tests, floors and how to read them"))
    return blocks


def noise(configuration: dict) -> str:
    """Each judged metric's margin and the noise it is read against (its floors)."""
    parts = []
    for metric, block in configuration["metrics"].items():
        floors = [f"floor {floor['value']:.4g} ({floor['source']})" if floor["value"] is not None else f"floor: {floor['source']}"
                  for floor in block["floors"]]
        parts.append(f"`{metric}`: margin {block['margin']['value']:.4g} ({block['margin']['source']}); " + "; ".join(floors))
    return "Noise: " + ". ".join(parts) + "." if parts else "No metric judged beyond the winning-ticket rule."


def tickets(facts: SweepFacts) -> str:
    names = {run.run_id: run.tags.get("mlflow.runName", run.run_id) for run in facts.sweep.lineages}
    if facts.registered:
        rows = [[f"`models:/{v.name}/{v.version}`", names.get(v.run_id, v.run_id), v.tags.get("lth.round", "-"),
                 v.tags.get("lth.winning", "-"), v.tags.get("lth.sparsity", "-"), f"`{v.source}`"] for v in facts.registered]
        return ("The tickets registered in MLflow's model registry from this sweep's lineages (`lth export --register`):\n\n"
                + table(["model", "lineage", "round", "winning", "sparsity", "source"], rows))
    if facts.frame.empty:
        return "No round of the sweep has finished yet: no ticket to export."
    said = f"The model registry could not be read ({facts.registry_failed}). " if facts.registry_failed else (
        "No ticket of this sweep is registered in MLflow's model registry. ")
    return said + f"Export one with `{export_command(facts)}` (`--register NAME` registers it; README, \"Taking a ticket away\")."


def export_command(facts: SweepFacts) -> str:
    """`lth export` of a winning ticket: the first lineage that has one, else the first lineage."""
    row = next((row for row in facts.rows if row.get("winning_round") is not None), facts.rows[0] if facts.rows else None)
    label, seed = (row["method"], row["seed"]) if row else ("LABEL", "SEED")
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{label}-s{seed}-ticket")
    return (f"lth export --sweep {shlex.quote(facts.name)} --sweep-id {facts.sweep_id} --label {shlex.quote(str(label))} "
            f"--seed {seed} --winning --out {out}")
