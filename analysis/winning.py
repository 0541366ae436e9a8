"""The winning ticket, as Frankle & Carbin define it, decided in one place: `lth tickets`, LTH-PASS,
the end-of-sweep summary and `lth export --winning` all read this rule.

A round of a method is a winning ticket when, over the configuration's seeds, the sparse network
- reaches test accuracy at its early-stopping iteration (`train/early_stop_acc`: the iteration of
  minimum validation loss) no worse than its trunk's at the trunk's, within the margin of test
  accuracy; and
- gets there in no more iterations than its trunk (`train/early_stop_iteration`), within one
  evaluation interval (`train/early_stop_every`): the iteration is only known to that resolution.
Both are paired by seed (analysis/round_evidence.py, analysis/noninferiority.py); the round matches
when both match, fails when either fails, and is undetermined otherwise: an early-stopping minimum
at the first or last evaluation (saturated: the loss may have kept falling) says where the
evaluations stopped, not when the network learned, so that seed cannot be judged on speed. The
winning ticket is the sparsest round reached while every round up to it matches; confident when
both criteria are (p = the larger of the two, an intersection-union test).

A sweep that measured no early stopping at all (`analysis.early_stopping_every: 0`, or analysis
off) is judged on final test accuracy alone, and the output says the speed criterion is missing.
"""
from __future__ import annotations

import math

import pandas as pd

from lth_sweep.analysis import noise_floor
from lth_sweep.analysis.noninferiority import paired_difference
from lth_sweep.analysis.round_evidence import FAILS, MATCHES, UNDETERMINED, RoundEvidence, evidence, reference_for
from lth_sweep.analysis.verdict_rows import row

RULE = "winning ticket (Frankle & Carbin)"
ACCURACY, ITERATION = "train/early_stop_acc", "train/early_stop_iteration"
SATURATED, EVERY = "train/early_stop_saturated", "train/early_stop_every"
FINAL_ACCURACY = "test/acc"


def measured(frame: pd.DataFrame) -> bool:
    return all(c in frame.columns and frame[c].notna().any() for c in (ACCURACY, f"dense/{ACCURACY}"))


def judge(
    config: str, frame: pd.DataFrame, seeds: list[int], methods: list[str], override: float | None, relative: bool
) -> dict:
    """{"rule", "note", "margin", "allowance", "rows": one per method, "walks": RoundEvidence per method}."""
    early = measured(frame)
    metric = ACCURACY if early else FINAL_ACCURACY
    if metric not in frame.columns or f"dense/{metric}" not in frame.columns:
        return {"rule": RULE, "note": "test accuracy not measured: no winning ticket can be judged", "margin": None,
                "allowance": None, "rows": [], "walks": {}}
    dense = float(frame.drop_duplicates("trunk")[f"dense/{metric}"].mean())
    margin = noise_floor.margin("test/acc", dense, override, relative)
    allowance = _allowance(frame) if early else None
    reference = reference_for(frame, metric)
    walks = {}
    for method in methods:
        rows = frame[frame["label"] == method]
        walks[method] = []
        for round_index, group in rows.groupby("round", sort=True):
            sparsity = float(group["sparsity"].mean())
            accuracy = evidence(group, metric, seeds, reference, margin.value, True, int(round_index), sparsity)
            step = _combined(accuracy, _speed(group, seeds, allowance, int(round_index), sparsity)) if early else accuracy
            walks[method].append(step)
    floor = noise_floor.floor(frame, metric)
    return {
        "rule": RULE,
        "note": _note(early, allowance),
        "margin": {"value": margin.value, "source": margin.source},
        "allowance": allowance,
        "rows": [row(config, method, metric, walks[method], margin.value, dense, floor) | {"rule": RULE} for method in methods],
        "walks": walks,
    }


def _allowance(frame: pd.DataFrame) -> float:
    """One evaluation interval, the resolution of the early-stopping iteration (0 if not logged)."""
    for column in (EVERY, f"dense/{EVERY}"):
        if column in frame.columns and frame[column].notna().any():
            return float(frame[column].max())
    return 0.0


def _note(early: bool, allowance: float | None) -> str:
    if not early:
        return ("early stopping not measured in this sweep: judged on final test accuracy alone, without Frankle & "
                "Carbin's speed criterion")
    interval = (f"within one evaluation interval ({allowance:g} iterations)" if allowance
                else "with no allowance (the evaluation interval was not logged)")
    return ("test accuracy at the early-stopping iteration no worse than dense within the margin, reached in no more "
            f"iterations than dense {interval}")


def _speed(group: pd.DataFrame, seeds: list[int], allowance: float, round_index: int, sparsity: float) -> RoundEvidence:
    rows = group.drop_duplicates("seed").set_index("seed")
    saturated = [s for s in seeds if s in rows.index and _flag(rows, s, SATURATED)]
    dense_saturated = [s for s in seeds if s in rows.index and _flag(rows, s, f"dense/{SATURATED}")]
    if saturated or dense_saturated:
        parts = ([f"seed(s) {_list(saturated)} saturated (validation minimum at the first or last evaluation)"] if saturated else []) + (
            [f"the trunk(s) of seed(s) {_list(dense_saturated)} saturated"] if dense_saturated else [])
        return RoundEvidence(round_index, sparsity, UNDETERMINED, "early stopping " + "; ".join(parts))
    sparse = [_value(rows, s, ITERATION) for s in seeds]
    dense = [_value(rows, s, f"dense/{ITERATION}") for s in seeds]
    missing = [s for s, a, b in zip(seeds, sparse, dense) if not (math.isfinite(a) and math.isfinite(b))]
    if missing:
        return RoundEvidence(round_index, sparsity, UNDETERMINED, f"early-stopping iteration of seed(s) {_list(missing)} not measured")
    difference = paired_difference([b - a for a, b in zip(sparse, dense)], 0.0, allowance)  # positive: faster
    return RoundEvidence(round_index, sparsity, MATCHES if difference.matches else FAILS, "", list(seeds), sparse, dense, difference)


def _combined(accuracy: RoundEvidence, speed: RoundEvidence) -> RoundEvidence:
    """Both criteria: fails if either fails, undetermined if either is, else matches (p: the larger)."""
    if FAILS in (accuracy.status, speed.status):
        status = FAILS
    elif UNDETERMINED in (accuracy.status, speed.status):
        status = UNDETERMINED
    else:
        status = MATCHES
    if status == FAILS:  # the criterion that failed, not the other one's doubts
        reasons = [accuracy.reason or "less accurate than dense"] if accuracy.status == FAILS else []
        reasons += [speed.reason or "slower than dense"] if speed.status == FAILS else []
    else:
        reasons = [r for r in (accuracy.reason, speed.reason) if r]
    speed_p = speed.difference.p_value if speed.difference is not None and math.isfinite(speed.difference.p_value) else math.nan
    if speed.difference is not None and speed.difference.not_confident_because:
        speed_p = math.nan  # no confidence from the speed criterion: none for the rule
    return RoundEvidence(accuracy.round, accuracy.sparsity, status, "; ".join(reasons), accuracy.seeds, accuracy.values,
                         accuracy.references, accuracy.difference, accuracy.sampling_note, speed_p)


def _flag(rows: pd.DataFrame, seed: int, column: str) -> bool:
    return column in rows.columns and rows.loc[seed, column] == 1


def _value(rows: pd.DataFrame, seed: int, column: str) -> float:
    if seed not in rows.index or column not in rows.columns:
        return math.nan
    return float(rows.loc[seed, column])


def _list(seeds) -> str:
    return ", ".join(str(s) for s in seeds)
