"""Orchestration overhead: the quickstart as a sweep (Ray Tune + MLflow) vs the same lineages run
as a plain in-process loop (no Ray, no MLflow), on the same machine.

    python bench/overhead.py [CONFIG] [--threads N]

Prints the wall time of both and their ratio. The plain loop trains each trunk once, then each of
its lineages, one after the other, with torch using N intra-op threads (default: all cores), which
is how one would run these lineages without an orchestrator.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import make_plan
from lth_sweep.trainables.lineage import run_lineage
from lth_sweep.trainables.trunk import cached_dataset, train_trunk

ROOT = Path(__file__).resolve().parents[1]


def plain_loop(plan) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    accuracy = {}
    for trunk_id, (spec, rewinds) in plan.trunks.items():
        trunk = train_trunk(spec, rewinds)
        for lineage in [l for l in plan.lineages if l.trunk.id == trunk_id]:
            accuracy[lineage.id] = run_lineage(lineage, trunk)[-1].metrics["test/acc"]
    return time.perf_counter() - started, accuracy


def sweep(config: Path) -> float:
    with tempfile.TemporaryDirectory() as workdir:
        lth = Path(sys.executable).with_name("lth")
        started = time.perf_counter()
        subprocess.run([str(lth), "sweep", str(config)], cwd=workdir, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "MLFLOW_TRACKING_URI": ""})
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", nargs="?", default=str(ROOT / "configs" / "quickstart.yaml"))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    plan = make_plan(load_config(args.config))
    torch.set_num_threads(args.threads)
    for spec, _ in plan.trunks.values():  # dataset generation is the same in both; keep it out
        cached_dataset(spec.data)
    loop_seconds, _ = plain_loop(plan)
    sweep_seconds = sweep(Path(args.config).resolve())
    print(f"lineages: {len(plan.lineages)}, trunks: {len(plan.trunks)}, rounds: {plan.total_rounds}, cores: {os.cpu_count()}")
    print(f"plain in-process loop ({args.threads} torch threads): {loop_seconds:7.1f} s")
    print(f"lth sweep (Ray Tune + MLflow, from process start):   {sweep_seconds:7.1f} s")
    print(f"overhead = sweep / plain loop:                          {sweep_seconds / loop_seconds:7.2f}")


if __name__ == "__main__":
    main()
