"""How well a finished sweep's sample sizes separate its methods, metric by metric.

    cd DIR_OF_A_FINISHED_SWEEP && python /path/to/lth-sweep/bench/signal_to_noise.py --sweep quickstart

Per metric of the registry that the sweep measured: the signal (the spread of the methods' mean
values, averaged over rounds), the noise between seeds (one method's spread over seeds, pooled) and
from the analysis sample (its logged sampling error), their ratio, and the noise floor (how far a
second dense seed moves). A ratio below 1 is what `lth tickets` prints as "not resolvable at this
sample size". Prints a Markdown table for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import math

from analysis import metrics as registry
from analysis.noise_floor import floor, separation
from analysis.query import load_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="quickstart")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    args = parser.parse_args()
    frame = load_sweep(args.sweep, args.tracking_uri)
    metrics = [m for figure in registry.FIGURES for m in registry.in_figure(figure, frame.columns)]
    seeds = frame["seed"].nunique()
    print(f"sweep {args.sweep}: {frame['label'].nunique()} methods x {seeds} seeds x {frame['round'].nunique()} rounds\n")
    print("| metric | signal (methods' spread) | noise: seeds | noise: sample | signal / noise | resolvable | noise floor (source) |")
    print("|---|---|---|---|---|---|---|")
    for metric in metrics:
        s, f = separation(frame, metric), floor(frame, metric)
        resolvable = {True: "yes", False: "**no**", None: "cannot tell"}[s.resolvable]
        floor_text = "-" if not math.isfinite(f.value) else f"{f.value:.4g} ({f.source})"
        print(
            f"| {metric} | {_g(s.signal)} | {_g(s.seed_noise)} | {_g(s.sampling_noise)} | {_g(s.ratio, 2)} | {resolvable} |"
            f" {floor_text} |"
        )


def _g(value: float, digits: int = 3) -> str:
    return "-" if not math.isfinite(value) else f"{value:.{digits}g}"


if __name__ == "__main__":
    main()
