"""A verdict's walk over the rounds as the row `lth tickets` prints and `--format json` carries:
the ticket (the leading run of matching rounds), where and why the walk stopped, every round's
numbers, the drift in floors and Chen et al.'s regions."""
from __future__ import annotations

import math

from lth_sweep.analysis import metrics as registry
from lth_sweep.analysis import lineage_verdicts, noise_floor
from lth_sweep.analysis.round_evidence import MATCHES, RoundEvidence


def ticket_depth(walk: list[RoundEvidence]) -> int:
    """Rounds in the leading run of MATCHES (Frankle & Carbin: a pass after a failing round is luck)."""
    depth = 0
    for step in walk:
        if step.status != MATCHES:
            break
        depth += 1
    return depth


def row(config, method, metric, walk: list[RoundEvidence], margin: float, dense_value: float, floor) -> dict:
    higher = registry.higher_is_better(metric)
    depth = ticket_depth(walk)
    ticket = walk[depth - 1] if depth else None
    stop = walk[depth] if depth < len(walk) else None
    means = [_mean(step.values) for step in walk]
    curve = [(step.sparsity, m) for step, m in zip(walk, means)]
    entry = registry.lookup(metric)
    regions = lineage_verdicts.regions(
        [(s, m) for s, m in curve if m is not None], dense_value, higher, margin, collapse=entry.collapse
    )
    drift = [None if m is None else noise_floor.in_floor_units(lineage_verdicts.degradation(m, dense_value, higher), floor) for m in means]
    return {
        "config": config,
        "method": method,
        "metric": metric,
        "margin": margin,
        "dense": dense_value,
        "seeds": len(ticket.seeds) if ticket else (len(walk[0].seeds) if walk else 0),
        "ticket_round": ticket.round if ticket else None,
        "ticket_sparsity": ticket.sparsity if ticket else None,
        "ticket_mean": _mean(ticket.values) if ticket else None,
        "ticket_diff": finite(ticket.difference.mean) if ticket else None,
        "ticket_interval": [finite(ticket.difference.low), finite(ticket.difference.high)] if ticket else None,
        "ticket_p_value": _p(ticket.difference) if ticket else None,
        "stopped": None if stop is None else {"round": stop.round, "status": stop.status, "reason": stop.reason},
        "not_confident_because": next((s.difference.not_confident_because for s in walk[:max(depth, 1)]
                                       if s.difference and s.difference.not_confident_because), None),
        "sampling_note": next((s.sampling_note for s in walk if s.sampling_note), None),
        "rounds": [_round(step, m) for step, m in zip(walk, means)],
        "drift_in_floors": [None if d is None else round(d, 3) for d in drift],
        "regions": " ".join(label for _, label in regions),
        "curve": [[float(s), float(m)] for s, m in curve if m is not None],
    }


def _round(step: RoundEvidence, mean) -> dict:
    d = step.difference
    return {
        "round": step.round, "sparsity": step.sparsity, "status": step.status, "reason": step.reason or None,
        "n": len(step.seeds), "mean": mean, "sd": _sd(step.values),
        "reference": _mean(step.references), "diff": None if d is None else finite(d.mean),
        "interval": None if d is None else [finite(d.low), finite(d.high)],
        "p_value": None if d is None else _p(d), "df": None if d is None else finite(d.df),
    }


def _mean(values) -> float | None:
    return float(sum(values) / len(values)) if values else None


def _sd(values) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _p(difference) -> float | None:
    """The test's p, or None where no confidence can be claimed (a t-test on 1 df claims too much)."""
    return None if difference.not_confident_because else finite(difference.p_value)


def finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
