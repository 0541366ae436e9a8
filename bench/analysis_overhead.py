"""What the analysis costs: the quickstart with analysis on and off, and per round the analysis time
against the training time (both read back from MLflow).

    python bench/analysis_overhead.py                 # the quickstart
    python bench/analysis_overhead.py --config configs/quickstart.yaml --set seeds=[0]

Each sweep runs as `lth sweep` in a fresh temporary directory, timed from process start to exit.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quickstart_config import config_parser


def timed_sweep(config: str, overrides: list[str], workdir: Path) -> float:
    command = [str(Path(sys.executable).with_name("lth")), "sweep", config, *[f"--set={o}" for o in overrides]]
    started = time.perf_counter()
    subprocess.run(command, cwd=workdir, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def per_round(workdir: Path, sweep: str) -> tuple[list[float], list[float]]:
    from lth_sweep.analysis.query import load_sweep

    frame = load_sweep(sweep, f"sqlite:///{workdir / 'mlflow.db'}")
    analysis = frame["analysis/seconds"].dropna() if "analysis/seconds" in frame else []
    return list(frame["time/round_seconds"]), list(analysis)


def main() -> None:
    args = config_parser().parse_args()
    import yaml

    name = yaml.safe_load(Path(args.config).read_text()).get("name", "quickstart")
    with tempfile.TemporaryDirectory() as off_dir, tempfile.TemporaryDirectory() as on_dir:
        off = timed_sweep(args.config, [*args.overrides, "analysis.enabled=false"], Path(off_dir))
        on = timed_sweep(args.config, args.overrides, Path(on_dir))
        training, analysis = per_round(Path(on_dir), name)
        training_off, _ = per_round(Path(off_dir), name)
    print(f"wall time, analysis off: {off:.1f} s")
    print(f"wall time, analysis on:  {on:.1f} s  (+{100 * (on / off - 1):.1f}%)")
    print(f"per round: training {statistics.mean(training):.2f} s (median {statistics.median(training):.2f}), "
          f"analysis {statistics.mean(analysis):.2f} s (median {statistics.median(analysis):.2f}), "
          f"ratio {statistics.mean(analysis) / statistics.mean(training):.2f}")
    print(f"training per round with analysis off: {statistics.mean(training_off):.2f} s "
          f"(median {statistics.median(training_off):.2f}): the analysis slows training by "
          f"{100 * (statistics.mean(training) / statistics.mean(training_off) - 1):.1f}% (shared cores, early-stopping validation)")


if __name__ == "__main__":
    main()
