"""How long a Python process that imported what `lth sweep` imports takes to exit, with and
without `gc.freeze()` before it exits (`orchestrator.cli.entry_point` freezes).

    python bench/interpreter_exit.py --repeats 3

Each measurement is a child process: it imports the modules, prints the time, and exits; the
exit time is from that print until the child is gone.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import gc, sys, time
import torch, ray, ray.tune, mlflow, pandas, matplotlib.pyplot
from mlflow.tracking import MlflowClient
import lth_sweep.orchestrator.sweep, lth_sweep.analysis.plots
objects = len(gc.get_objects())
if sys.argv[1] == "freeze":
    gc.freeze()
print(objects, time.time(), flush=True)
"""


def exit_seconds(mode: str) -> tuple[int, float]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    objects, printed = child.stdout.readline().split()
    child.wait()
    return int(objects), time.time() - float(printed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for mode in ("plain", "freeze"):
        runs = [exit_seconds(mode) for _ in range(args.repeats)]
        seconds = [s for _, s in runs]
        print(f"{mode:6s}: {runs[0][0]:,} objects tracked; exit {statistics.median(seconds):.2f} s "
              f"(median of {len(seconds)}: {', '.join(f'{s:.2f}' for s in seconds)})")


if __name__ == "__main__":
    main()
