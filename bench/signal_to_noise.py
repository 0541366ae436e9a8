"""How well a finished sweep's seeds separate its methods, metric by metric and configuration.

    cd DIR_OF_A_FINISHED_SWEEP && python /path/to/lth-sweep/bench/signal_to_noise.py --sweep quickstart

Per trunk configuration and registry metric the sweep measured: the test across methods `lth
tickets` prints (one-way ANOVA of the per-seed differences from dense at the sparsest common
sparsity), the pooled seed-to-seed sd of those differences, the smallest difference detectable with
80% power from this many seeds, the seeds a difference of the margin needs, and the noise floor.
Prints a Markdown table for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import math

from lth_sweep.analysis import metrics as registry
from lth_sweep.analysis.query import load_sweep
from lth_sweep.analysis.sweep_verdicts import judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="quickstart")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    args = parser.parse_args()
    frame = load_sweep(args.sweep, args.tracking_uri)
    metrics = [m for figure in registry.FIGURES for m in registry.in_figure(figure, frame.columns)]
    result = judge(frame, metrics)
    print(f"sweep {args.sweep}: {frame['label'].nunique()} methods x {frame['seed'].nunique()} seeds x {frame['round'].nunique()} rounds\n")
    print("| configuration | metric | ANOVA p | seeds' sd | detectable (80%) | margin | seeds for the margin | noise floor (source) |")
    print("|---|---|---|---|---|---|---|---|")
    for configuration in result["configurations"]:
        for metric, block in configuration["metrics"].items():
            test, floor = block["methods_test"], block["floors"][0]
            p = test["why_not"] or _g(test["p_value"])
            floor_text = "-" if floor["value"] is None else f"{floor['value']:.4g} ({floor['source']})"
            print(
                f"| {configuration['config']} | {metric} | {p} | {_g(test['sigma'])} | {_g(test['detectable'])} |"
                f" {block['margin']['value']:.4g} | {test['seeds_for_margin'] or '> 1000 or -'} | {floor_text} |"
            )


def _g(value, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


if __name__ == "__main__":
    main()
