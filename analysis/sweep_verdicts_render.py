"""`lth tickets` as text for a terminal: one block per trunk configuration, each heading saying the
margin, the reference and the floor; the statistics stated under the blocks."""
from __future__ import annotations

from lth_sweep.analysis import metrics as registry

WIDTH_P = 6


def _number(value, digits: int = 4, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _interval(interval) -> str:
    if not interval or interval[0] is None:
        return ""
    return f" [{interval[0]:+.4f}, {interval[1]:+.4f}]"


def _stopped(row: dict) -> str:
    stop = row.get("stopped")
    if not stop:
        return "-"
    text = f"r{stop['round']} {stop['status']}"
    return f"{text}: {stop['reason']}" if stop.get("reason") else text


def _rows(rows: list[dict]) -> list[str]:
    width = max([len("method"), *(len(r["method"]) for r in rows)])
    lines = [
        f"  {'method':{width}s}  {'ticket':>14s}  {'mean':>7s}  {'diff vs reference [90% CI]':>32s}  {'n':>2s}  {'p':>{WIDTH_P}s}"
        f"  {'confident to':>12s}  {'last drift':>10s}  {'regions':<16s}  stopped at"
    ]
    for r in rows:
        if r["ticket_round"] is None:
            ticket, mean, diff, p = "none", "-", "-", "-"
        else:
            ticket = f"{r['ticket_sparsity']:.1%} (r{r['ticket_round']})"
            mean = _number(r["ticket_mean"])
            diff = _number(r["ticket_diff"], signed=True) + _interval(r["ticket_interval"])
            p = "-" if r["ticket_p_value"] is None else f"{r['ticket_p_value']:.3f}"
        confident = "-" if r.get("confident_sparsity") is None else f"{r['confident_sparsity']:.1%}"
        drift = r["drift_in_floors"][-1] if r["drift_in_floors"] else None
        drift = "-" if drift is None else f"{drift:+.1f} fl"
        lines.append(
            f"  {r['method']:{width}s}  {ticket:>14s}  {mean:>7s}  {diff:>32s}  {r['seeds']:>2d}  {p:>{WIDTH_P}s}"
            f"  {confident:>12s}  {drift:>10s}  {r['regions']:<16s}  {_stopped(r)}"
        )
    reasons = sorted({r["not_confident_because"] for r in rows if r.get("not_confident_because")})
    if reasons:
        lines.append(f"  no confidence claimed: {'; '.join(reasons)}")
    notes = sorted({r["sampling_note"] for r in rows if r.get("sampling_note")})
    if notes:
        lines.append(f"  sampling error: {'; '.join(notes)}")
    return lines


def _floors(block: dict) -> str:
    parts = []
    for index, floor in enumerate(block["floors"]):
        name = "floor" if index == 0 else "second floor"
        value = "not measured" if floor["value"] is None else f"{floor['value']:.4g}"
        parts.append(f"{name} {value} ({floor['source']})" if floor["value"] is not None else f"{name}: {floor['source']}")
    return "; ".join(parts)


def _methods_test(test: dict, margin: float) -> str:
    if test["why_not"]:
        return f"  methods compared: cannot test ({test['why_not']})"
    text = (f"  methods compared at {test['sparsity']:.1%} (one-way ANOVA of the per-seed differences from the reference): F = {test['f']:.2f}, "
            f"p = {test['p_value']:.3g}; with {test['seeds']} seeds a difference of {test['detectable']:.4g} between two "
            f"methods is detected with 80% power")
    needed = test["seeds_for_margin"]
    return text + (f"; a difference the size of the margin ({margin:.4g}) needs {needed} seeds per method" if needed
                   else f"; the margin ({margin:.4g}) would need more than 1000 seeds")


def render_configuration(configuration: dict) -> list[str]:
    seeds = ", ".join(str(s) for s in configuration["seeds"])
    lines = [f"=== configuration {configuration['config']} (seeds {seeds}) ==="]
    rule = configuration["winning"]
    if rule["rows"]:
        margin = rule["margin"]
        lines.append(f"{rule['rule']}: {rule['note']}; margin {margin['value']:.4g} ({margin['source']})")
        lines += _rows(rule["rows"])
        lines.append("")
    for metric, block in configuration["metrics"].items():
        direction = "higher is better" if registry.higher_is_better(metric) else "lower is better"
        margin = block["margin"]
        lines.append(f"{metric} ({direction}; margin {margin['value']:.4g}, {margin['source']}; reference: {block['reference']}; "
                     f"{_floors(block)})")
        lines += _rows(block["rows"])
        lines.append(_methods_test(block["methods_test"], margin["value"]))
        lines.append("")
    if configuration["lth_pass"]:
        judged = [rule["rule"], *configuration["metrics"]]
        lines.append(f"LTH-PASS (a match on all of: {', '.join(judged)})")
        width = max(len("method"), *(len(m) for m in configuration["lth_pass"]))
        for method, verdict in configuration["lth_pass"].items():
            passing = ", ".join(f"{s:.1%}" for s in verdict["sparsities"]) or "none"
            confident = ", ".join(f"{s:.1%}" for s in verdict["confident_sparsities"]) or "none"
            lines.append(f"  {method:{width}s}  passes at {passing}; each confident at 5% at {confident}")
    if configuration["saturated"]:
        lines += ["", f"saturated (every network at a bound of the metric, nothing to separate): {', '.join(configuration['saturated'])}"]
    if configuration["skipped"]:
        lines += ["", f"not judged (not measured in this sweep, or no reference): {', '.join(configuration['skipped'])}"]
    return lines + [""]


def render(result: dict) -> str:
    lines = []
    for configuration in result["configurations"]:
        lines += render_configuration(configuration)
    family = max((row.get("family", 1) for rows in result["metrics"].values() for row in rows), default=1)
    lines += [
        "How to read it. Each configuration (everything that defines a trunk but its seed) is judged on its own; its",
        "seeds are the replication unit. A round MATCHES when the mean over seeds of the paired difference (the",
        "network minus its own seed's reference, on the same images) is no worse than -margin; the margin is fixed",
        "before the data (the registry's default or --margin), never widened by noise. A seed that collapsed (a",
        "non-finite value) fails the round; a seed not measured, a saturated one or a metric at its bound for every",
        "network makes it undetermined. ticket: the sparsest round reached while every round up to it matches.",
        "diff [90% CI]: mean difference (+ is better) and its two-sided 90% interval from the seeds' spread (t, n-1 df)",
        "and the paired sampling error of the images (Welch-Satterthwaite df); its lower end is the bound of the",
        "one-sided non-inferiority test at 5% whose p is printed. confident to: the same walk on that test, at the",
        f"level Holm's procedure gives each of a method's {family} claims (the winning-ticket rule and each metric;",
        "a metric's rounds are a fixed sequence), never from fewer than 3 seeds or seeds that tie. last drift: the",
        "last round's distance from the reference in floors (+ is worse). regions (Chen et al.): I matches, II",
        "degraded, III collapsed (worse by more than the registry's collapse, to the end).",
    ]
    return "\n".join(lines)
