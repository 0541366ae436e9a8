"""Which tickets win, on what, at which sparsity, and how sure we are: verdicts on a sweep's table.

Input: the tidy frame of `analysis.query.load_sweep` (one row per lineage and round). Everything
is judged one trunk configuration at a time (analysis/configurations.py); seeds are the only
replication unit. Per configuration, method (a lineage's label) and metric:

- the margin, fixed before the data: the user's `--margin` or the registry's default;
- each round, from every seed's paired difference with its own reference
  (analysis/round_evidence.py): MATCHES (the mean difference no worse than -margin), FAILS, or
  UNDETERMINED with the reason; its interval and one-sided non-inferiority p
  (analysis/noninferiority.py);
- the metric's ticket: the sparsest round reached while every round up to it matches; "confident
  to": the same walk on the test (p below the metric's level), the levels from Holm's procedure
  across the method's metrics (analysis/multiplicity.py).

The winning ticket (Frankle & Carbin) is one rule (analysis/winning.py), used here, by LTH-PASS,
the summary and `lth export --winning`. The test across methods and its power: analysis/power.py.
"""
from __future__ import annotations

import math

import pandas as pd

from lth_sweep.analysis import metrics as registry
from lth_sweep.analysis import noise_floor, power, winning
from lth_sweep.analysis.configurations import CONFIG, with_configurations
from lth_sweep.analysis.multiplicity import holm_sequences
from lth_sweep.analysis.noninferiority import ALPHA, MIN_SEEDS_FOR_CONFIDENCE
from lth_sweep.analysis.round_evidence import MATCHES, at_one_bound, evidence, reference_for
from lth_sweep.analysis.verdict_rows import finite as _finite
from lth_sweep.analysis.verdict_rows import row as _row
from lth_sweep.analysis.verdict_rows import ticket_depth

DEFAULT_METRICS = registry.judged_by_default()
SAME_SPARSITY = 0.01  #: sparsities this close count as the same design point (tables, the test across methods)
WINNING = winning.RULE  # the family member that is the winning-ticket rule


def higher_is_better(metric: str) -> bool:
    return registry.higher_is_better(metric)


def resolve(metrics, columns) -> list[str]:
    """Registry patterns (`xai/concept_jaccard_top*`) -> the sweep's columns they match; plain
    names stay as they are (a name the sweep lacks is reported as not measured)."""
    out = []
    for metric in metrics:
        matches = sorted(c for c in columns if "*" in metric and registry.lookup(metric).matches(c) and "/" in c
                         and not c.startswith(registry.DERIVED_PREFIXES) and "/class/" not in c)
        out += [m for m in (matches or [metric]) if m not in out]
    return out


def judge(
    frame: pd.DataFrame, metrics=DEFAULT_METRICS, margin: dict[str, float] | float | None = None, relative: bool = False,
    tolerance: dict[str, float] | float | None = None,
) -> dict:
    """The verdicts of every configuration of the sweep. `margin`: one number for every metric, or
    per metric (`tolerance` is its old name); left out, the registry's default. `relative`: the
    user's margins are fractions of |dense|. The result: {"configurations": [...], and flattened
    for readers of one metric: "metrics": {metric: rows}, "winning": rows, "lth_pass": {config:
    {method: ...}}}; every row names its configuration."""
    margin = tolerance if margin is None else margin
    frame = with_configurations(frame)
    _refuse_pooled_lineages(frame)
    metrics = resolve(metrics, frame.columns)
    overrides = margin if isinstance(margin, dict) else {m: margin for m in [*metrics, WINNING] if margin is not None}
    configurations = [
        judge_configuration(str(name), rows, metrics, overrides, relative) for name, rows in frame.groupby(CONFIG, sort=True)
    ]
    flat: dict[str, list] = {}
    for configuration in configurations:
        for metric, block in configuration["metrics"].items():
            flat.setdefault(metric, []).extend(block["rows"])
    return {
        "configurations": configurations,
        "metrics": flat,
        "winning": [row for c in configurations for row in c["winning"]["rows"]],
        "lth_pass": {c["config"]: c["lth_pass"] for c in configurations},
        "alpha": ALPHA,
        "min_seeds_for_confidence": MIN_SEEDS_FOR_CONFIDENCE,
    }


class PooledLineages(ValueError):
    """Two lineages under one label, configuration and seed: their rounds would be pooled."""


def _refuse_pooled_lineages(frame: pd.DataFrame) -> None:
    """Nothing silently dropped: a round judges one row per seed, so two lineages sharing a label
    in one configuration and seed (pruning entries that differ in something the label does not
    show, from a sweep planned before labels were made distinct) are an error, not a pick."""
    if "lineage" not in frame.columns:
        return
    counts = frame.groupby([CONFIG, "label", "seed"], sort=True)["lineage"].nunique()
    pooled = counts[counts > 1]
    if len(pooled):
        (config, label, seed), n = next(iter(pooled.items()))
        raise PooledLineages(
            f"{n} lineages share the label {label!r} in configuration {config} at seed {seed} "
            f"({len(pooled)} such groups): their rounds cannot be judged apart. Run the sweep again with this "
            "version (entries that would share a label get distinct ones) or give its pruning entries `name`s"
        )


def judge_configuration(name: str, frame: pd.DataFrame, metrics: list[str], overrides: dict, relative: bool) -> dict:
    seeds = sorted(int(s) for s in frame["seed"].unique())
    methods = sorted(str(m) for m in frame["label"].unique())
    blocks, skipped, saturated = {}, [], []
    for metric in metrics:
        why = _cannot_judge(frame, metric)
        if why == "saturated":
            saturated.append(metric)
        elif why:
            skipped.append(metric)
        else:
            blocks[metric] = judge_metric(name, frame, metric, seeds, methods, overrides.get(metric), relative)
    rule = winning.judge(name, frame, seeds, methods, overrides.get(WINNING, overrides.get("test/acc")), relative)
    _confidence_levels(blocks, rule, methods)
    lth_pass = _lth_pass(blocks, rule, methods)
    for block in [*blocks.values(), rule]:
        del block["walks"]  # RoundEvidence objects: their content is in the rows
    return {
        "config": name,
        "seeds": seeds,
        "methods": methods,
        "metrics": blocks,
        "winning": rule,
        "lth_pass": lth_pass,
        "skipped": skipped,
        "saturated": saturated,
    }


def _cannot_judge(frame: pd.DataFrame, metric: str) -> str:
    if metric not in frame.columns or frame[metric].isna().all() or not registry.known(metric):
        return "not measured"
    reference = reference_for(frame, metric)
    if reference.column is not None and (reference.column not in frame.columns or frame[reference.column].isna().all()):
        return "no reference"
    references = [reference.constant] if reference.column is None else list(frame[reference.column].dropna())
    if at_one_bound(metric, [*frame[metric].dropna(), *references]):
        return "saturated"
    return ""


def judge_metric(config: str, frame: pd.DataFrame, metric: str, seeds: list[int], methods: list[str], override, relative) -> dict:
    higher = higher_is_better(metric)
    reference = reference_for(frame, metric)
    dense_value = 1.0 if reference.column is None else float(frame.drop_duplicates("trunk")[reference.column].mean())
    fixed = noise_floor.margin(metric, dense_value, override, relative)
    measured_floors = noise_floor.floors(frame, metric)
    walks = {}
    for method in methods:
        rows = frame[frame["label"] == method]
        walks[method] = [
            evidence(group, metric, seeds, reference, fixed.value, higher, int(round_index), float(group["sparsity"].mean()))
            for round_index, group in rows.groupby("round", sort=True)
        ]
    rows = [_row(config, method, metric, walks[method], fixed.value, dense_value, measured_floors[0]) for method in methods]
    return {
        "margin": {"value": fixed.value, "source": fixed.source},
        "reference": reference.description,
        "floors": [
            {"value": _finite(f.value), "trunks": f.trunks, "source": f.source,
             "spread": None if f.spread is None else [_finite(v) for v in f.spread]} for f in measured_floors
        ],
        "methods_test": _methods_test(metric, methods, walks, fixed.value),
        "rows": rows,
        "walks": walks,  # RoundEvidence per method, for the confidence levels and LTH-PASS; removed after
    }


def _confidence_levels(blocks: dict, rule: dict, methods: list[str]) -> None:
    """Per method, Holm across its family (the winning-ticket rule and each judged metric): the
    rounds each may claim with confidence, and at which level."""
    for method in methods:
        chains = {metric: [step.p_value for step in block["walks"][method]] for metric, block in blocks.items()}
        targets = [(metric, next(r for r in block["rows"] if r["method"] == method), block["walks"][method])
                   for metric, block in blocks.items()]
        if rule["rows"]:
            chains[WINNING] = [step.p_value for step in rule["walks"][method]]
            targets.append((WINNING, next(r for r in rule["rows"] if r["method"] == method), rule["walks"][method]))
        levels = holm_sequences(chains, ALPHA)
        for metric, row, walk in targets:
            depth, level = levels[metric]
            depth = min(depth, ticket_depth(walk))
            row["confident_round"] = walk[depth - 1].round if depth else None
            row["confident_sparsity"] = walk[depth - 1].sparsity if depth else None
            row["level"] = level
            row["family"] = len(chains)


def _lth_pass(blocks: dict, rule: dict, methods: list[str]) -> dict:
    """Per method: the sparsities where the winning-ticket rule and every judged metric match
    (point), and where each is confident at 5% (an intersection-union test: no adjustment needed)."""
    out = {}
    for method in methods:
        walks = [block["walks"][method] for block in blocks.values()] + ([rule["walks"][method]] if rule["rows"] else [])
        by_round = [{step.round: step for step in walk} for walk in walks]
        rounds = sorted(set.intersection(*(set(w) for w in by_round))) if by_round else []
        passing, confident = [], []
        for r in rounds:
            steps = [w[r] for w in by_round]
            if all(step.status == MATCHES for step in steps):
                passing.append(steps[0].sparsity)
                if all(step.p_value < ALPHA for step in steps):
                    confident.append(steps[0].sparsity)
        out[method] = {"sparsities": passing, "confident_sparsities": confident, "max": max(passing, default=None)}
    return out


def _methods_test(metric: str, methods: list[str], walks: dict, margin: float) -> dict:
    """The one-way ANOVA across methods at the sparsest sparsity every method reaches, and its power."""
    reached = [{step.round: step for step in walks[m]} for m in methods]
    rounds = set.intersection(*(set(r) for r in reached)) if reached else set()
    # the design's common sparsities: a round every method reached, at sparsities within 1 point of
    # each other (methods that prune per layer or by score land a few tenths apart)
    common = [r for r in rounds if max(s[r].sparsity for s in reached) - min(s[r].sparsity for s in reached) <= SAME_SPARSITY]
    if not common:
        test = power.across_methods({}, None)
        detail = "no sparsity common to every method"
    else:
        last = max(common)
        sparsity = sum(steps[last].sparsity for steps in reached) / len(reached)
        groups = {}
        for method, steps in zip(methods, reached):
            step = steps[last]
            sign = 1.0 if higher_is_better(metric) else -1.0
            groups[method] = [sign * (v - r) for v, r in zip(step.values, step.references)]
        test = power.across_methods(groups, sparsity)
        detail = test.why_not
    needed = power.seeds_needed(margin, test.sigma) if math.isfinite(test.sigma) else None
    return {
        "sparsity": test.sparsity, "methods": test.methods, "seeds": test.seeds, "f": _finite(test.f_statistic),
        "p_value": _finite(test.p_value), "sigma": _finite(test.sigma), "detectable": _finite(test.detectable),
        "seeds_for_margin": needed, "why_not": detail or None,
    }


def judge_defaults(frame) -> dict | None:
    """The verdicts on the registry's default metrics, as a finished sweep logs them and `lth report`
    shows them; None before any round finished."""
    return None if frame.empty else judge(frame, list(DEFAULT_METRICS))
