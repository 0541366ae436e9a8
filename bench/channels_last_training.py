"""Training time of the quickstart's trunk with `train.channels_last` off and on, in one process.

    python bench/channels_last_training.py                  # 2 repeats of each, interleaved
    python bench/channels_last_training.py --set model.name=resnet20 --set data.image_size=32 \
        --set "pruning=[{method: imp, rate: 0.4, rounds: 1}]"     # (the quickstart rewinds to 125)

One thread, as in a trial. Prints seconds per training and the trunk's test accuracy for each
layout (the layouts use different convolution kernels, so accuracies agree only roughly).
"""
from __future__ import annotations

import statistics
import time

import torch

from quickstart_config import config_parser, seed0_trunk


def main() -> None:
    from lth_sweep.trainables.trunk import cached_dataset, train_trunk

    parser = config_parser()
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    accuracy: dict[bool, float] = {}
    for _ in range(args.repeats):
        for channels_last in (False, True):
            _, trunk, _ = seed0_trunk(args.config, [f"train.channels_last={str(channels_last).lower()}", *args.overrides])
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
