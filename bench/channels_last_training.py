"""Training time of the quickstart's trunk with `train.channels_last` off and on, in one process.

    python bench/channels_last_training.py                  # 2 repeats of each, interleaved
    python bench/channels_last_training.py --set model.name=resnet20 --set data.image_size=32

One thread, as in a trial. Prints seconds per training and the trunk's test accuracy for each
layout (the layouts use different convolution kernels, so accuracies agree only roughly).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from orchestrator.config import load_config
    from orchestrator.plan import make_plan
    from trainables.trunk import cached_dataset, train_trunk

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    accuracy: dict[bool, float] = {}
    for _ in range(args.repeats):
        for channels_last in (False, True):
            config = load_config(args.config, ["seeds=[0]", f"train.channels_last={str(channels_last).lower()}", *args.overrides])
            (trunk, _), *_ = make_plan(config).trunks.values()
            cached_dataset(trunk.data)  # generated once, outside the timing
            started = time.perf_counter()
            result = train_trunk(trunk, ())
            seconds[channels_last].append(time.perf_counter() - started)
            accuracy[channels_last] = result.metrics["test/acc"]
    for channels_last, times in seconds.items():
        print(f"channels_last={channels_last!s:5}  {statistics.median(times):6.2f} s per training "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)})  test/acc {accuracy[channels_last]:.4f}")
    print(f"speed-up: {statistics.median(seconds[False]) / statistics.median(seconds[True]):.2f}x")


if __name__ == "__main__":
    main()
