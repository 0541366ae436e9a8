"""Which lineage run and which round to export: the lineage of (sweep, label, seed) in a tracking
store, and round K or the label's winning round as `lth tickets` judges it.

Reads through `analysis.query.read_sweep` (the one reader of a sweep) and decides the winning
round with `analysis.sweep_verdicts.judge`, the verdicts `lth tickets` prints: nothing here re-states
either rule.
"""
from __future__ import annotations

from dataclasses import dataclass

from lth_sweep.trainables import record
from lth_sweep.export.errors import ExportError


@dataclass(frozen=True)
class LineageRun:
    """One lineage's run, as the sweep's record holds it."""

    run_id: str
    lineage_id: str
    label: str
    method: str
    seed: int
    status: str
    params: dict[str, str]
    rounds: dict[int, dict[str, float]]  # finished round -> its metrics
    sweep: str
    sweep_id: str  # the sweep's `lth.id` (its parent run's)
    parent_run_id: str
    trunk_id: str = ""  # the run's `lth.trunk`

    @property
    def planned_rounds(self) -> int:
        """The rounds its config asks for (`pruning.rounds`): the last is the one every lineage,
        however old, kept a ticket of."""
        try:
            return int(self.params["pruning.rounds"])
        except (KeyError, ValueError):
            return max(self.rounds, default=0)


def read_record(tracking_uri: str, sweep: str, sweep_id: str | None = None, experiment: str | None = None):
    """The sweep's record (`analysis.query.SweepRecord`); several sweeps of the name and no
    `sweep_id` is `SweepAmbiguous`, none `SweepNotFound` (the CLI words both)."""
    from lth_sweep.analysis.query import read_sweep

    return read_sweep(sweep, tracking_uri, experiment, latest=False, sweep_id=sweep_id)


def find_lineage(sweep_record, sweep: str, label: str, seed: int) -> LineageRun:
    """The lineage of `label` and `seed` in the sweep; ExportError listing what the sweep has
    when there is none, or naming the lineages when several match (a grid over models or rates
    gives one label several lineages)."""
    def label_of(run) -> str:
        return run.tags.get(record.LABEL, run.tags.get(record.METHOD, ""))

    def seed_of(run) -> int | None:
        try:
            return int(run.params.get("trunk.seed", ""))
        except ValueError:
            return None

    matches = [run for run in sweep_record.lineages if label_of(run) == label and seed_of(run) == seed]
    if not matches:
        have = sorted({(label_of(run), seed_of(run)) for run in sweep_record.lineages}, key=str)
        listed = ", ".join(f"{lab} seed {s}" for lab, s in have) or "no lineages"
        raise ExportError(f"sweep {sweep!r} has no lineage labelled {label!r} with seed {seed}; it has: {listed}")
    if len(matches) > 1:
        ids = ", ".join(f"{run.tags.get(record.ID)} (run {run.run_id})" for run in matches)
        raise ExportError(
            f"sweep {sweep!r} has {len(matches)} lineages labelled {label!r} with seed {seed} (a grid over "
            f"models, data or rates): {ids}; export needs one"
        )
    run = matches[0]
    parent = sweep_record.parent
    return LineageRun(
        run_id=run.run_id, lineage_id=run.tags.get(record.ID, ""), label=label, method=run.tags.get(record.METHOD, ""),
        seed=seed, status=run.status, params=dict(run.params), rounds=sweep_record.rounds(run.run_id), sweep=sweep,
        sweep_id=parent.tags.get(record.ID, "") if parent else "", parent_run_id=parent.run_id if parent else "",
        trunk_id=run.tags.get(record.TRUNK, ""),
    )


def checked_round(lineage: LineageRun, round_index: int) -> int:
    """`round_index` if the lineage finished it; else ExportError naming the rounds it has."""
    if round_index not in lineage.rounds:
        have = ", ".join(map(str, sorted(lineage.rounds))) or "none yet"
        raise ExportError(
            f"lineage {lineage.label} seed {lineage.seed} (run {lineage.run_id}) has no finished round {round_index}; "
            f"finished rounds: {have}"
        )
    return round_index


def winning_round(sweep_record, label: str, metric: str | None = None, seed: int | None = None) -> int:
    """The round of `label`'s winning ticket, over the seeds of the trunk configuration of its
    lineage with `seed`, as `lth tickets` reports it (`analysis.sweep_verdicts.judge`): by default Frankle
    & Carbin's rule (analysis/winning.py), with `metric` that metric's ticket (the sparsest round
    reached while every round up to it matches dense within the margin); ExportError when the
    label has none, saying why."""
    from lth_sweep.analysis.sweep_verdicts import PooledLineages, judge

    frame = sweep_record.frame()
    judged_on = metric or "test/acc"
    if frame.empty or judged_on not in frame.columns:
        raise ExportError(f"the sweep has no finished round measuring {judged_on!r}: no winning ticket to export")
    if seed is not None and ((frame["label"] == label) & (frame["seed"] == seed)).any():
        config = frame.loc[(frame["label"] == label) & (frame["seed"] == seed), "config"].iloc[0]
        frame = frame[frame["config"] == config]
    try:
        verdicts = judge(frame, [metric] if metric else [])
    except PooledLineages as error:
        raise ExportError(str(error)) from None
    configuration = verdicts["configurations"][0] if len(verdicts["configurations"]) == 1 else None
    if configuration is None:
        raise ExportError(f"label {label!r} runs in several trunk configurations: name the lineage's seed")
    if metric is None:
        rows = {row["method"]: row for row in configuration["winning"]["rows"]}
        what, margin = "Frankle & Carbin's rule", configuration["winning"]["margin"]
    else:
        if metric in configuration["saturated"]:
            raise ExportError(f"{metric} is saturated in this sweep (every network at a bound): no winning ticket is judged on it")
        if metric not in configuration["metrics"]:
            raise ExportError(f"no winning ticket is judged on {metric!r} in this sweep (not measured for the lineages or their trunks)")
        rows = {row["method"]: row for row in configuration["metrics"][metric]["rows"]}
        what, margin = f"its ticket on {metric}", configuration["metrics"][metric]["margin"]
    if label not in rows:
        raise ExportError(f"label {label!r} has no rounds judged on {what}; judged labels: {', '.join(sorted(rows))}")
    row = rows[label]
    if row["ticket_round"] is None:
        stop = row["stopped"] or {}
        why = "is undetermined" if stop.get("status") == "undetermined" else "fails"
        why += f" ({stop['reason']})" if stop.get("reason") else ""
        raise ExportError(
            f"label {label!r} has no winning ticket by {what} in configuration {configuration['config']}: its first round "
            f"{why}, against dense within the margin {margin['value']:.4g} ({margin['source']}); `lth tickets` says more; "
            "export a round with --round K instead"
        )
    return int(row["ticket_round"])
