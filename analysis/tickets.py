"""Which tickets win, on what, at which sparsity, and how sure we are: verdicts on a sweep's table.

Input: the tidy frame of `analysis.query.load_sweep` (one row per lineage and round, with the
trunk's value of every metric as `dense/<metric>`). Per method (a lineage's label, pooled over
seeds) and metric: the winning ticket (highest sparsity no worse than dense within tolerance, on
the mean over seeds), whether that holds with confidence (the worse-side bound of the 95% CI of the
paired difference sparse - dense is within tolerance), the regions I/II/III along the curve, and
LTH-PASS: the sparsities at which the method is no worse than dense on every chosen metric.
"""
from __future__ import annotations

import math

import pandas as pd

from analysis import stats, verdicts

#: The metrics `lth tickets` judges by default: one or two per dimension of Chen et al., plus the
#: explanation metrics whose dense value is known. Flatness is left out: its scale depends on the
#: network too much for one absolute tolerance.
DEFAULT_METRICS = (
    "test/acc",
    "ood/auroc_noise",
    "corrupt/acc",
    "adv/fgsm_acc",
    "calib/ece",
    "xai/gradcam_energy_in_object",
    "xai/concept_recovery",
)

#: Directions of the explanation metrics (the rest are in analysis.verdicts.METRIC_DIRECTIONS).
XAI_DIRECTIONS = {
    "xai/lime_fidelity": False,  # squared error of the surrogate: lower = more faithful
    "xai/lime_stability": False,  # explanation change under noise: lower = more stable
    "xai/concept_cav_acc": True,
    "xai/*": True,
    "train/early_stop_iteration": False,
    "train/early_stop_acc": True,
}

#: Consistency with the trunk: the trunk compared with itself scores exactly 1.
CONSISTENCY_PREFIXES = ("xai/gradcam_rank_corr", "xai/gradcam_iou_top", "xai/gradcam_cosine", "xai/concept_jaccard_top", "xai/concept_kendall_tau")


def higher_is_better(metric: str) -> bool:
    return verdicts.higher_is_better(metric, XAI_DIRECTIONS if metric.startswith(("xai/", "train/")) else None)


def with_dense(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`frame` with `dense_<metric>` (what stats.ticket_table reads) and `method` = the lineage's label."""
    out = frame.copy()
    if metric.startswith(CONSISTENCY_PREFIXES):
        out[f"dense_{metric}"] = 1.0
    elif f"dense/{metric}" in out.columns:
        out[f"dense_{metric}"] = out[f"dense/{metric}"]
    else:
        raise KeyError(f"the trunks of this sweep have no value of {metric!r}")
    out["method"] = out["label"]
    return out


def judge(frame: pd.DataFrame, metrics=DEFAULT_METRICS, tolerance: float = 0.005, relative: bool = False) -> dict:
    """{"metrics": {metric: per-method verdict rows}, "lth_pass": {method: {...}}, "skipped": [...]}."""
    present, skipped, tables = [], [], {}
    for metric in metrics:
        if metric not in frame.columns or frame[metric].isna().all():
            skipped.append(metric)
            continue
        try:
            prepared = with_dense(frame, metric)
        except KeyError:
            skipped.append(metric)
            continue
        higher = higher_is_better(metric)
        tables[metric] = stats.ticket_table(prepared, metric, higher=higher, tolerance=tolerance, relative=relative)
        present.append(metric)
    verdict_rows = {metric: [_verdict(metric, table, tolerance, relative) for _, table in tables[metric].groupby("method")] for metric in present}
    return {"metrics": verdict_rows, "lth_pass": _lth_pass(tables, present), "skipped": skipped, "tolerance": tolerance, "relative": relative}


def _verdict(metric: str, table: pd.DataFrame, tolerance: float, relative: bool) -> dict:
    table = table.sort_values("round")
    higher = higher_is_better(metric)
    dense = float(table["dense_mean"].mean())
    curve = list(zip(table["sparsity"], table["mean"]))
    winners = table[table["ticket"]]
    best = winners.loc[winners["sparsity"].idxmax()] if len(winners) else None
    confident = table[table["confident_ticket"]]
    regions = verdicts.regions(curve, dense, higher, tolerance, relative, collapse=0.1 if metric.endswith("acc") else None)
    return {
        "method": str(table["method"].iloc[0]),
        "metric": metric,
        "seeds": int(table["n"].max()),
        "dense": dense,
        "ticket_sparsity": None if best is None else float(best["sparsity"]),
        "ticket_round": None if best is None else int(best["round"]),
        "ticket_mean": None if best is None else float(best["mean"]),
        "ticket_ci": None if best is None else [_finite(best["ci_low"]), _finite(best["ci_high"])],
        "ticket_p_value": None if best is None else _finite(best["p_value"]),
        "confident_sparsity": float(confident["sparsity"].max()) if len(confident) else None,
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


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def render(result: dict) -> str:
    """The verdicts as text for a terminal."""
    lines = []
    tol = f"{result['tolerance']:g}" + (" x |dense|" if result["relative"] else "")
    for metric, rows in result["metrics"].items():
        direction = "higher is better" if higher_is_better(metric) else "lower is better"
        lines += [f"{metric} ({direction}; tolerance {tol})"]
        width = max(len("method"), *(len(r["method"]) for r in rows))
        lines.append(f"  {'method':{width}s}  {'winning ticket':>14s}  {'mean [95% CI] over seeds':>28s}  {'dense':>7s}  {'p':>6s}  {'confident to':>12s}  regions by round")
        for r in rows:
            if r["ticket_sparsity"] is None:
                ticket, value, p = "none", "-", "-"
            else:
                ticket = f"{r['ticket_sparsity']:.1%} (r{r['ticket_round']})"
                ci = r["ticket_ci"]
                value = f"{r['ticket_mean']:.4f}" + ("" if ci[0] is None else f" [{ci[0]:.4f}, {ci[1]:.4f}]")
                p = "-" if r["ticket_p_value"] is None else f"{r['ticket_p_value']:.2f}"
            confident = "-" if r["confident_sparsity"] is None else f"{r['confident_sparsity']:.1%}"
            lines.append(f"  {r['method']:{width}s}  {ticket:>14s}  {value:>28s}  {r['dense']:>7.4f}  {p:>6s}  {confident:>12s}  {r['regions']}")
        lines.append("")
    if result["lth_pass"]:
        lines.append(f"LTH-PASS (no worse than dense on all of: {', '.join(result['metrics'])})")
        width = max(len("method"), *(len(m) for m in result["lth_pass"]))
        for method, verdict in result["lth_pass"].items():
            passing = ", ".join(f"{s:.1%}" for s in verdict["sparsities"]) or "none"
            confident = ", ".join(f"{s:.1%}" for s in verdict["confident_sparsities"]) or "none"
            lines.append(f"  {method:{width}s}  passes at {passing}; with 95% confidence at {confident}")
    if result["skipped"]:
        lines += ["", f"not judged (not measured in this sweep): {', '.join(result['skipped'])}"]
    lines += [
        "",
        "winning ticket: highest sparsity whose mean over seeds is no worse than the dense trunk's within the",
        "tolerance; CI: t-interval over seeds; p: paired t-test against each seed's trunk; confident to: highest",
        "sparsity where even the worse bound of the paired difference's CI is within tolerance; regions (Chen et",
        "al.): I no worse than dense, II degraded, III collapsed (worse by > 0.1 for accuracies, to the end).",
    ]
    return "\n".join(lines)
