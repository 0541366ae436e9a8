"""Which tickets win, on what, at which sparsity, and how sure we are: verdicts on a sweep's table.

Input: the tidy frame of `analysis.query.load_sweep` (one row per lineage and round, with the
trunk's value of every metric as `dense/<metric>`). Per method (a lineage's label, pooled over
seeds) and metric:

- the noise floor (analysis/noise_floor.py): how far a second dense seed moves; the tolerance is
  the floor where it is measured, else the registry's default for the metric, else the user's;
- the winning ticket: the sparsest round reached while every round up to it has a mean over seeds
  no worse than dense within the tolerance (Frankle & Carbin); on `test/acc`, where the
  early-stopping iteration is measured and not saturated, also reached in at most as many
  iterations as dense;
- whether that holds with confidence: the worse-side bound of the 95% CI of the paired difference
  sparse - dense (seeds' spread plus the sampling error) is within tolerance; never with fewer than
  3 seeds or zero spread, and the output says why;
- drift in floor units, the regions I/II/III along the curve, and LTH-PASS (every chosen metric at
  once). A metric at its bound for every network (accuracy 1.0 everywhere) is "saturated": no
  verdict is drawn from it.
"""
from __future__ import annotations

import math

import pandas as pd

from analysis import metrics as registry
from analysis import noise_floor, stats, verdicts
from analysis.noise_floor import SE_PREFIX

DEFAULT_METRICS = registry.judged_by_default()
EARLY_STOP = "train/early_stop_iteration"


def higher_is_better(metric: str) -> bool:
    return registry.higher_is_better(metric)


def with_dense(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`frame` with the columns stats.ticket_table reads: `dense_<metric>` (1 for a consistency
    metric), the sampling errors `se_<metric>` / `dense_se_<metric>` where logged, and `method` =
    the lineage's label."""
    out = frame.copy()
    if registry.is_consistency(metric):
        out[f"dense_{metric}"] = 1.0
    elif f"dense/{metric}" in out.columns:
        out[f"dense_{metric}"] = out[f"dense/{metric}"]
    else:
        raise KeyError(f"the trunks of this sweep have no value of {metric!r}")
    for source, target in ((f"{SE_PREFIX}{metric}", f"se_{metric}"), (f"dense/{SE_PREFIX}{metric}", f"dense_se_{metric}")):
        if source in out.columns:
            out[target] = out[source]
    out["method"] = out["label"]
    return out


def resolve(metrics, columns) -> list[str]:
    """Registry patterns (`xai/concept_jaccard_top*`) -> the sweep's columns they match; plain
    names stay as they are (a name the sweep lacks is reported as not measured)."""
    out = []
    for metric in metrics:
        matches = sorted(c for c in columns if "*" in metric and registry.lookup(metric).matches(c) and "/" in c
                         and not c.startswith(("dense/", "se/", "floor/")) and "/class/" not in c)
        out += [m for m in (matches or [metric]) if m not in out]
    return out


def judge(
    frame: pd.DataFrame, metrics=DEFAULT_METRICS, tolerance: dict[str, float] | float | None = None, relative: bool = False
) -> dict:
    """{"metrics": {metric: per-method verdict rows}, "floors": {metric: ...}, "lth_pass": {method:
    {...}}, "skipped": [...], "saturated": [...]}. `tolerance`: one number for every metric, or
    per metric; None (or a metric left out) takes the noise floor, else the registry default."""
    metrics = resolve(metrics, frame.columns)
    overrides = tolerance if isinstance(tolerance, dict) else {m: tolerance for m in metrics if tolerance is not None}
    present, skipped, saturated, tables, floors, tolerances, separations = [], [], [], {}, {}, {}, {}
    for metric in metrics:
        if metric not in frame.columns or frame[metric].isna().all() or not registry.known(metric):
            skipped.append(metric)
            continue
        try:
            prepared = with_dense(frame, metric)
        except KeyError:
            skipped.append(metric)
            continue
        if registry.saturated(metric, [*prepared[metric], *prepared[f"dense_{metric}"]]):
            saturated.append(metric)
            continue
        floor = noise_floor.floor(frame, metric)
        dense = float(prepared.drop_duplicates("trunk")[f"dense_{metric}"].mean())
        override = overrides.get(metric)
        if override is not None and relative:
            override *= abs(dense)
        tol = noise_floor.tolerance(metric, floor, dense, override)
        separations[metric] = noise_floor.separation(frame, metric)
        tables[metric] = stats.ticket_table(prepared, metric, higher=higher_is_better(metric), tolerance=tol.value)
        floors[metric] = floor
        tolerances[metric] = {"value": tol.value, "source": tol.source}
        present.append(metric)
    early = _early_stopping(frame)
    rows = {
        metric: [_verdict(metric, table, tolerances[metric]["value"], floors[metric], early) for _, table in tables[metric].groupby("method")]
        for metric in present
    }
    return {
        "metrics": rows,
        "floors": {m: {"value": _finite(f.value), "trunks": f.trunks, "source": f.source} for m, f in floors.items()},
        "tolerances": tolerances,
        "separation": {
            m: {"signal_to_noise": _finite(s.ratio), "resolvable": s.resolvable} for m, s in separations.items()
        },
        "lth_pass": _lth_pass(tables, present),
        "skipped": skipped, "saturated": saturated, "early_stopping": early["note"],
        "min_seeds_for_confidence": stats.MIN_SEEDS_FOR_CONFIDENCE,
    }


def _early_stopping(frame: pd.DataFrame) -> dict:
    """Per (method, round): is the mean early-stopping iteration at most the dense one's? Only where
    both are measured and not saturated; otherwise the criterion is left out and `note` says why."""
    dense_column = f"dense/{EARLY_STOP}"
    if EARLY_STOP not in frame.columns or dense_column not in frame.columns or frame[dense_column].isna().all():
        saturated = "dense/train/early_stop_saturated" in frame.columns and (frame["dense/train/early_stop_saturated"] == 1).any()
        why = "saturated for the dense trunk (its minimum is at the first or last evaluation)" if saturated else "not measured for the trunks"
        return {"faster": None, "note": f"early-stopping iteration {why}: winning tickets judged on accuracy alone"}
    grouped = frame.groupby(["label", "round"])
    faster = (grouped[EARLY_STOP].mean() <= grouped[dense_column].mean()).to_dict()
    return {"faster": faster, "note": "winning tickets on test/acc also reach their early-stopping iteration no later than dense"}


def _verdict(metric: str, table: pd.DataFrame, tolerance: float, floor: noise_floor.Floor, early: dict) -> dict:
    table = table.sort_values("round").copy()
    method = str(table["method"].iloc[0])
    higher = higher_is_better(metric)
    entry = registry.lookup(metric)
    dense = float(table["dense_mean"].mean())
    if metric == "test/acc" and early["faster"] is not None:
        faster = table["round"].map(lambda r: early["faster"].get((method, r), True)).astype(bool)
        table["ticket"] &= faster
        table["confident_ticket"] &= faster
    curve = list(zip(table["sparsity"], table["mean"]))
    best = stats.winning_tickets(table)
    best = best.iloc[0] if len(best) else None
    confident = stats.winning_tickets(table, "confident_ticket")
    regions = verdicts.regions(curve, dense, higher, tolerance, collapse=entry.collapse)
    last = table.iloc[-1]
    drift = [noise_floor.in_floor_units(verdicts.degradation(v, dense, higher), floor) for _, v in curve]
    return {
        "method": method,
        "metric": metric,
        "seeds": int(table["n"].max()),
        "dense": dense,
        "ticket_sparsity": None if best is None else float(best["sparsity"]),
        "ticket_round": None if best is None else int(best["round"]),
        "ticket_mean": None if best is None else float(best["mean"]),
        "ticket_ci": None if best is None else _within(entry.bounds, best["ci_low"], best["ci_high"]),
        # a consistency's "dense" is the trunk against itself, 1 by construction: nothing to test against
        "ticket_p_value": None if best is None or entry.reference == "consistency" else _finite(best["p_value"]),
        "confident_sparsity": float(confident["sparsity"].iloc[0]) if len(confident) else None,
        "not_confident_because": str(last["not_confident_because"]) or None,
        "drift_in_floors": [None if d is None else round(d, 3) for d in drift],
        "regions": " ".join(label for _, label in regions),
        "curve": [[float(s), float(v)] for s, v in curve],
    }


def _lth_pass(tables: dict[str, pd.DataFrame], metrics: list[str]) -> dict:
    """Per method: the sparsities where every judged metric is a ticket (point estimate), and where
    every one is a confident ticket."""
    out = {}
    if not metrics:
        return out
    methods = set.intersection(*(set(tables[m]["method"]) for m in metrics))
    for method in sorted(methods):
        rows = {m: tables[m][tables[m]["method"] == method].set_index("round") for m in metrics}
        rounds = sorted(set.intersection(*(set(r.index) for r in rows.values())))
        sparsity = {r: float(rows[metrics[0]].loc[r, "sparsity"]) for r in rounds}
        passing = [sparsity[r] for r in rounds if all(bool(rows[m].loc[r, "ticket"]) for m in metrics)]
        confident = [sparsity[r] for r in rounds if all(bool(rows[m].loc[r, "confident_ticket"]) for m in metrics)]
        out[method] = {"sparsities": passing, "confident_sparsities": confident, "max": max(passing, default=None)}
    return out


def _within(bounds: tuple[float, float] | None, low: float, high: float) -> list[float | None]:
    """A CI clipped to the range the metric lives in (a t-interval over 2 seeds easily leaves it)."""
    low, high = _finite(low), _finite(high)
    if bounds is None or low is None:
        return [low, high]
    return [max(low, bounds[0]), min(high, bounds[1])]


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(result: dict) -> str:
    """The verdicts as text for a terminal."""
    lines = []
    for metric, rows in result["metrics"].items():
        direction = "higher is better" if higher_is_better(metric) else "lower is better"
        floor, tol = result["floors"][metric], result["tolerances"][metric]
        if floor["value"]:
            floor_text = f"noise floor {_number(floor['value'])} ({floor['source']})"
        elif floor["trunks"] >= 2 and "not measured" not in floor["source"]:
            floor_text = f"noise floor 0: the {floor['trunks']} dense seeds agree exactly, too few to measure a spread"
        else:
            floor_text = f"noise floor {floor['source']}"
        lines += [f"{metric} ({direction}; tolerance {tol['value']:.4g}, {tol['source']}; {floor_text})"]
        separation = result["separation"][metric]
        if separation["resolvable"] is False:
            lines.append(
                f"  NOT RESOLVABLE at this sample size: methods differ by {separation['signal_to_noise']:.2f} x the noise"
                " between seeds and samples; the rows below cannot rank them (more seeds or larger analysis samples)"
            )
        width = max(len("method"), *(len(r["method"]) for r in rows))
        lines.append(
            f"  {'method':{width}s}  {'winning ticket':>14s}  {'mean [95% CI] over seeds':>28s}  {'dense':>7s}  {'p':>6s}"
            f"  {'confident to':>12s}  {'last drift':>10s}  regions by round"
        )
        for r in rows:
            if r["ticket_sparsity"] is None:
                ticket, value, p = "none", "-", "-"
            else:
                ticket = f"{r['ticket_sparsity']:.1%} (r{r['ticket_round']})"
                ci = r["ticket_ci"]
                value = f"{r['ticket_mean']:.4f}" + ("" if ci[0] is None else f" [{ci[0]:.4f}, {ci[1]:.4f}]")
                p = "-" if r["ticket_p_value"] is None else f"{r['ticket_p_value']:.2f}"
            confident = "-" if r["confident_sparsity"] is None else f"{r['confident_sparsity']:.1%}"
            drift = r["drift_in_floors"][-1] if r["drift_in_floors"] else None
            drift = "-" if drift is None else f"{drift:+.1f} fl"
            lines.append(
                f"  {r['method']:{width}s}  {ticket:>14s}  {value:>28s}  {r['dense']:>7.4f}  {p:>6s}  {confident:>12s}"
                f"  {drift:>10s}  {r['regions']}"
            )
        reasons = sorted({r["not_confident_because"] for r in rows if r["not_confident_because"]})
        if reasons:
            lines.append(f"  no confidence claimed: {'; '.join(reasons)}")
        lines.append("")
    if result["lth_pass"]:
        lines.append(f"LTH-PASS (no worse than dense on all of: {', '.join(result['metrics'])})")
        width = max(len("method"), *(len(m) for m in result["lth_pass"]))
        for method, verdict in result["lth_pass"].items():
            passing = ", ".join(f"{s:.1%}" for s in verdict["sparsities"]) or "none"
            confident = ", ".join(f"{s:.1%}" for s in verdict["confident_sparsities"]) or "none"
            lines.append(f"  {method:{width}s}  passes at {passing}; with 95% confidence at {confident}")
    if result["saturated"]:
        lines += ["", f"saturated (every network at the metric's bound, nothing to separate): {', '.join(result['saturated'])}"]
    if result["skipped"]:
        lines += ["", f"not judged (not measured in this sweep): {', '.join(result['skipped'])}"]
    lines += [
        "",
        f"{result['early_stopping']}.",
        "noise floor: how far a second dense seed moves (1 - its agreement with the trunk for consistency metrics;",
        "the dense values' spread across seeds plus the sampling error otherwise); last drift: the last round's",
        "distance from dense in floors (+ = worse). winning ticket: the sparsest round reached while every round up",
        "to it is, on the mean over seeds, no worse than dense within the tolerance. CI: t-interval over seeds",
        "including the sampling error; p: paired t-test against each seed's trunk; confident to: the same walk",
        f"on the CI's worse bound, claimed only with {result['min_seeds_for_confidence']}+ seeds and a non-zero spread. regions (Chen et al.):",
        "I no worse than dense, II degraded, III collapsed (worse by more than the registry's collapse, to the end).",
    ]
    return "\n".join(lines)
