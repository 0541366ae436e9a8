"""The end-of-sweep summary, read back from MLflow (the system of record), not from Ray."""
from __future__ import annotations

import csv
import io
import math
from fnmatch import fnmatchcase

from lth_sweep.analysis import metrics as registry
from lth_sweep.analysis import strict_json
from lth_sweep.analysis.noise_floor import FLOOR_PREFIX, TWIN_PREFIX, pairs_of_a_ring
from lth_sweep.analysis.query import SweepRecord
from lth_sweep.orchestrator.plan import SweepPlan, display_name
from lth_sweep.trainables import record


#: Explanation drift at the last round, shown beside accuracy: (column, metric pattern as in the
#: registry, its value for the trunk: 1 for a consistency with the trunk, else the trunk's own).
DRIFT_COLUMNS = [
    ("gradcam_rho", "xai/gradcam_rank_corr", 1.0),
    ("on_object", "xai/gradcam_energy_in_object", None),
    ("concepts_j", "xai/concept_jaccard_top*", 1.0),
    ("true_concepts", "xai/concept_recovery", None),
]
#: The drift columns' headers, as a person reads them.
DRIFT_LABELS = {"gradcam_rho": "Grad-CAM rho", "on_object": "on object", "concepts_j": "concepts J@3", "true_concepts": "true concepts"}


def _find(metrics: dict[str, float], pattern: str, default=float("nan")):
    """The value of the first metric matching `pattern` (a registry pattern such as `..._top*`)."""
    return next((value for key, value in sorted(metrics.items()) if fnmatchcase(key, pattern)), default)


def collect_rows(plan: SweepPlan, sweep: SweepRecord, frame, verdicts: dict | None = None) -> list[dict]:
    """One row per lineage of the plan, in its order, from the sweep's record in MLflow (`frame`:
    its tidy table, `sweep.frame()`, built once by the caller); with `verdicts`
    (analysis.sweep_verdicts.judge), each row carries its method's winning ticket in its configuration
    (analysis/winning.py: the one rule `lth tickets` and `lth export` use)."""
    keys = _lineage_keys(frame)
    configs = {run_id: config for run_id, (config, _) in keys.items()}
    by_method = {(row["config"], row["method"]): row for row in (verdicts or {}).get("winning", [])}
    winning = {run_id: by_method.get(key, {}) for run_id, key in keys.items()}
    several = len(set(configs.values())) > 1
    rows = []
    for spec in plan.lineages:
        run = sweep.lineage(spec.id)
        rounds = sweep.rounds(run.run_id)
        acc = {step: metrics["test/acc"] for step, metrics in rounds.items() if "test/acc" in metrics}
        sparsity = {step: metrics[record.ROUND_DONE] for step, metrics in rounds.items()}
        trunk_run = sweep.trunks.get(spec.trunk.id)
        trunk = trunk_run.metrics if trunk_run else {}
        dense = trunk.get("test/acc", float("nan"))
        last = max(rounds) if rounds else None
        ticket = winning.get(run.run_id, {})
        rows.append(
            {
                "lineage": spec.id,
                "trunk": spec.trunk.id,
                "name": f"{configs.get(run.run_id, '?')} {display_name(spec)}" if several else display_name(spec),
                "config": configs.get(run.run_id, ""),
                "method": spec.pruning.label,
                "seed": spec.trunk.seed,
                "rounds": f"{len(rounds)}/{spec.pruning.rounds}",
                "sparsity": sparsity.get(last, float("nan")),
                "dense_acc": dense,
                "last_acc": acc.get(last, float("nan")),
                "delta_vs_dense": acc.get(last, float("nan")) - dense,
                "winning_round": ticket.get("ticket_round"),
                "winning_sparsity": float("nan") if ticket.get("ticket_sparsity") is None else ticket["ticket_sparsity"],
                "winning": winning_text(ticket),
                "status": run.status,
                "error": run.tags.get(record.ERROR, ""),
                "stopped": run.tags.get(record.STOPPED, ""),
                "run_id": run.run_id,
                "curve": [(sparsity[r], acc[r]) for r in sorted(rounds) if r in acc],
            }
        )
        for column, metric, dense_value in DRIFT_COLUMNS:
            rows[-1][column] = _find(run.metrics, metric)
            trunk_value = _find(trunk, metric, dense_value)
            rows[-1][f"dense_{column}"] = float("nan") if trunk_value is None else trunk_value
            rows[-1][f"floor_{column}"] = _find(trunk, f"{FLOOR_PREFIX}{metric}")
            rows[-1][f"twin_{column}"] = _find(trunk, f"{TWIN_PREFIX}{metric}")
    return rows


def _lineage_keys(frame) -> dict[str, tuple[str, str]]:
    """lineage run id -> (its trunk configuration, its label), from the sweep's tidy table."""
    if frame.empty:
        return {}
    keys = frame.drop_duplicates("run_id")
    return dict(zip(keys["run_id"], zip(keys["config"].astype(str), keys["label"].astype(str))))


def winning_text(ticket: dict) -> str:
    """The method's winning ticket as a cell: "r2 75.0%", "none (r1 fails)", "undetermined"."""
    if not ticket:
        return "-"
    if ticket.get("ticket_round") is not None:
        return f"r{ticket['ticket_round']} {ticket['ticket_sparsity']:.1%}"
    stop = ticket.get("stopped") or {}
    return "undetermined" if stop.get("status") == "undetermined" else f"none (r{stop.get('round', 1)} fails)"


def succeeded(row: dict) -> bool:
    """Finished, or stopped early by the scheduler (which is not a failure)."""
    return row["status"] == "FINISHED" or bool(row.get("stopped"))


def indistinct_columns(verdicts: dict | None) -> dict[str, str]:
    """Drift columns on which the sweep cannot tell its methods apart: column -> why, from the test
    across methods and its power (analysis/power.py) in every configuration that measured it."""
    out = {}
    for configuration in (verdicts or {}).get("configurations", []):
        for column, pattern, _ in DRIFT_COLUMNS:
            metric = next((m for m in sorted(configuration["metrics"]) if fnmatchcase(m, pattern)), None)
            if metric is None:
                continue
            test = configuration["metrics"][metric]["methods_test"]
            where = f" in {configuration['config']}" if len(verdicts["configurations"]) > 1 else ""
            if test["why_not"]:
                out[column] = f"cannot be tested across methods{where} ({test['why_not']})"
            elif test["p_value"] >= 0.05:
                out[column] = (f"the methods do not differ detectably{where} at {test['sparsity']:.1%} (ANOVA p = {test['p_value']:.2g};"
                               f" {test['seeds']} seeds detect a difference of {test['detectable']:.3g} with 80% power)")
    return out


def render(rows: list[dict], fmt: str = "table", indistinct: dict[str, str] | None = None) -> str:
    plain = [{k: v for k, v in row.items() if k != "curve"} for row in rows]
    if fmt == "json":
        return strict_json.dumps(plain, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(plain[0]) if plain else [])
        writer.writeheader()
        writer.writerows(plain)
        return out.getvalue()
    width = max([len("lineage"), *(len(row["name"]) for row in plain)])
    drift = any(row.get("gradcam_rho") == row.get("gradcam_rho") for row in plain if "gradcam_rho" in row)
    header = f"{'lineage':{width}s} {'rounds':>6s} {'sparsity':>9s} {'dense acc':>9s} {'last acc':>9s} {'vs dense':>9s} {'winning ticket':>16s}"
    if drift:
        header += f" {'Grad-CAM rho':>12s} {'on object':>13s} {'concepts J@3':>12s} {'true concepts':>13s}"
    lines = [header, "-" * len(header)]
    for row in plain:
        line = (
            f"{row['name']:{width}s} {row['rounds']:>6s} {row['sparsity']:>9.1%} {row['dense_acc']:>9.4f} "
            f"{row['last_acc']:>9.4f} {row['delta_vs_dense']:>+9.4f} {row.get('winning', '-'):>16s}"
        )
        if drift:
            line += (
                f" {_number(row.get('gradcam_rho'), 3):>12s} {_from_dense(row, 'on_object'):>13s} {_number(row.get('concepts_j'), 2):>12s}"
                f" {_from_dense(row, 'true_concepts'):>13s}"
            )
        lines.append(line + ("" if row["status"] == "FINISHED" else "  [stopped early]" if row["stopped"] else f"  [{row['status']}]"))
    if drift:
        lines += [
            "",
            "Grad-CAM rho: rank correlation of the last round's Grad-CAM maps with the dense trunk's (1 = same pixels);",
            "on object: share of Grad-CAM energy on the object, dense -> last round; concepts J@3: Jaccard of the",
            "top-3 PCBM concepts per class with the trunk's; true concepts: share of classes whose top concepts",
            "are the ones that define the class, dense -> last round.",
        ]
    lines += ["", WINNING_LEGEND]
    for column, why in (indistinct or {}).items() if drift else ():
        lines.append(f"{DRIFT_LABELS[column]}: {why}: read it as noise, not as a ranking")
    lines += noise_floor_lines(plain)
    return "\n".join(lines)


WINNING_LEGEND = (
    "winning ticket: the method's, over its configuration's seeds, as `lth tickets` judges it (Frankle & Carbin: test "
    "accuracy at the early-stopping iteration no worse than dense within the margin, in no more iterations); "
    "undetermined where a seed's early stopping saturated or was not measured."
)


def noise_floor_lines(rows: list[dict]) -> list[str]:
    """What a second dense seed scores against the trunk, per trunk configuration (seeds are the
    only thing a floor pools): the drift that is not the pruning's."""
    configs = sorted({row.get("config", "") for row in rows})
    if len(configs) <= 1:
        lines = _floor_lines(rows, "")
    else:
        lines = [line for c in configs for line in _floor_lines([r for r in rows if r.get("config", "") == c], f" in {c}")]
    if any(line.startswith("noise floor") and "not measured" not in line for line in lines):
        lines.append("A drift within the floor is not the pruning's doing; `lth tickets` judges every metric against it.")
    return lines


def _floor_lines(rows: list[dict], where: str) -> list[str]:
    trunks = {row["trunk"]: row for row in rows}.values()
    dense_acc = [row["dense_acc"] for row in trunks if math.isfinite(row["dense_acc"])]
    parts = []
    if len(dense_acc) >= 2:
        mean = sum(dense_acc) / len(dense_acc)
        std = math.sqrt(sum((a - mean) ** 2 for a in dense_acc) / (len(dense_acc) - 1))
        parts.append(f"dense acc {mean:.4f} +- {std:.4f} (std over {len(dense_acc)} seeds)")
    beyond = []
    for column, pattern, _ in [entry for entry in DRIFT_COLUMNS if registry.is_consistency(entry[1])]:
        twins = {row["trunk"]: row[f"twin_{column}"] for row in trunks if math.isfinite(row.get(f"twin_{column}", math.nan))}
        others = [row[f"floor_{column}"] for row in trunks if math.isfinite(row.get(f"floor_{column}", math.nan))]
        label = DRIFT_LABELS[column]
        if twins:
            parts.append(f"{label} {_range(twins.values())} for the dense twin")
        if others:
            pairs = pairs_of_a_ring(len(others))
            parts.append(f"{label} {_range(others)} for another seed's trunk (from {pairs} pair{'s' if pairs > 1 else ''} of seeds)")
        if twins or others:
            # below its trunk's twin (else the lowest other-seed score) by more than the metric's margin
            margin = registry.lookup(pattern).margin
            moved = [row["name"] for row in rows
                     if row.get(column, math.nan) < twins.get(row["trunk"], min(others, default=math.nan)) - margin]
            beyond.append(f"{label}: {', '.join(moved) if moved else 'none'}")
    if not parts:
        return ["", f"noise floor{where}: not measured (one seed per trunk configuration: a floor needs 2+ seeds)"]
    lines = ["", f"noise floor{where}, what dense networks differing from the trunk only in their seed or data order score: " + "; ".join(parts) + "."]
    if beyond:
        reference = "their trunk's dense twin" if any("for the dense twin" in p for p in parts) else "a second dense seed"
        lines.append(
            f"moved further from their trunk than {reference} (by more than the metric's margin), at the last round: "
            + "; ".join(beyond) + "."
        )
    return lines


def _range(values) -> str:
    values = list(values)
    low, high = min(values), max(values)
    return f"{low:.2f}" if round(low, 2) == round(high, 2) else f"{low:.2f}-{high:.2f}"


def _from_dense(row: dict, column: str) -> str:
    """"dense -> last round", or "-" where the sweep did not measure it."""
    dense, last = row.get(f"dense_{column}"), row.get(column)
    if not all(isinstance(v, float) and math.isfinite(v) for v in (dense, last)):
        return "-"
    return f"{dense:.2f} -> {last:.2f}"


#: The summary table's columns, as the rows name them (the parent run's `summary/lineages.json`).
#: In the order of the printed table (what fits the UI's first screen comes first).
TABLE_COLUMNS = (
    "name", "rounds", "sparsity", "dense_acc", "last_acc", "delta_vs_dense", "winning", "winning_round", "winning_sparsity",
    *(column for column, _, _ in DRIFT_COLUMNS), "status", "config", "method", "seed", "lineage", "run_id",
)
TABLE_DIGITS = 4  #: decimals kept in the table: 0.9785, not 0.9784999999999999


def summary_frame(rows: list[dict]):
    """The rows as a pandas DataFrame of TABLE_COLUMNS: numbers rounded, NaN as missing (null)."""
    import pandas as pd

    def cell(value):
        if isinstance(value, float):
            return round(value, TABLE_DIGITS) if math.isfinite(value) else None
        return value

    frame = pd.DataFrame([{column: cell(row.get(column)) for column in TABLE_COLUMNS} for row in rows], columns=list(TABLE_COLUMNS))
    return frame.astype({"seed": "Int64", "winning_round": "Int64"})


#: MLflow's run description styles table cells without padding ("imp@125 s04/4" ran into the next
#: cell): a no-break space each side keeps the columns apart in any Markdown renderer.
CELL_PAD = "\u00a0"


def _row(cells) -> str:
    return "| " + " | ".join(f"{CELL_PAD}{cell}{CELL_PAD}" for cell in cells) + " |"


def render_markdown(rows: list[dict], indistinct: dict[str, str] | None = None) -> str:
    """The summary as a Markdown table that wraps in MLflow's run description (the fixed-width
    table is ~150 characters wide and widens the page), with its legend and noise floor as text."""
    plain = [{k: v for k, v in row.items() if k != "curve"} for row in rows]
    drift = any(row.get("gradcam_rho") == row.get("gradcam_rho") for row in plain if "gradcam_rho" in row)
    header = ["lineage", "rounds", "sparsity", "dense acc", "last acc", "vs dense", "winning ticket"]
    if drift:
        header += [DRIFT_LABELS[column] for column, _, _ in DRIFT_COLUMNS]
    lines = [_row(header), "|" + "---|" * len(header)]
    for row in plain:
        best = row.get("winning", "-")
        status = "" if row["status"] == "FINISHED" else " (stopped early)" if row["stopped"] else f" ({row['status']})"
        cells = [
            row["name"].replace("|", "\\|") + status, row["rounds"], f"{row['sparsity']:.1%}", f"{row['dense_acc']:.4f}",
            f"{row['last_acc']:.4f}", f"{row['delta_vs_dense']:+.4f}", best,
        ]
        if drift:
            cells += [
                _number(row.get("gradcam_rho"), 3), _dense_to_last(row, "on_object"), _number(row.get("concepts_j"), 2),
                _dense_to_last(row, "true_concepts"),
            ]
        lines.append(_row(cells))
    # the printed table's notes, as paragraphs: its legend is one, wrapped at 100 characters; one line each for the rest
    notes = "\n".join(render(rows, "table", indistinct).splitlines()[2 + len(plain):]).strip().split("\n\n")
    first = notes[0].splitlines() if drift else []
    legend = [" ".join(first)] if drift else []
    rest = [l for part in notes[len(legend):] for l in part.splitlines()]
    paragraphs = legend + [line for line in rest if line.strip()]
    return "\n".join(lines) + "".join(f"\n\n{paragraph}" for paragraph in paragraphs)


def _number(value, digits: int) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _dense_to_last(row: dict, column: str) -> str:
    return f"{_number(row.get(f'dense_{column}'), 2)} -> {_number(row.get(column), 2)}"
