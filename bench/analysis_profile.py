"""One round's analysis against one round's training, in one process, per dimension.

    python bench/analysis_profile.py                      # the quickstart's trunk and analysis settings
    python bench/analysis_profile.py --set analysis.flatness.images=128

Trains the quickstart's seed-0 trunk (a round retrains the same epochs), measures its dense
reference, then measures the trunk again as if it were a round and prints the seconds of each
dimension and the ten most expensive calls.
"""
from __future__ import annotations

import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import torch

from quickstart_config import config_parser, seed0_trunk


def main() -> None:
    from lth_sweep.analysis.actors import Analyzer
    from lth_sweep.analysis.measure import measure
    from lth_sweep.trainables.trunk import train_trunk

    args = config_parser().parse_args()
    torch.set_num_threads(1)  # as in a trial and an actor
    config, trunk, rewinds = seed0_trunk(args.config, args.overrides)
    started = time.perf_counter()
    result = train_trunk(trunk, rewinds)
    training = time.perf_counter() - started
    analyzer = Analyzer(config.analysis)
    started = time.perf_counter()
    _, reference, _ = analyzer.reference(trunk, result.final)
    print(f"training: {training:.1f} s; dense reference: {time.perf_counter() - started:.1f} s")
    network = analyzer._network(trunk, result.final, {}, "round_01", Path(tempfile.mkdtemp()))
    profile = cProfile.Profile()
    profile.enable()
    started = time.perf_counter()
    metrics, _ = measure(network, reference)
    total = time.perf_counter() - started
    profile.disable()
    print(f"one round's analysis: {total:.2f} s = {total / training:.2f} of a round's training")
    for key, value in metrics.items():
        if key.startswith("analysis/seconds/"):
            print(f"  {key.removeprefix('analysis/seconds/'):12s} {value:.2f} s")
    pstats.Stats(profile).sort_stats("tottime").print_stats(10)


if __name__ == "__main__":
    main()
