"""How fast `lth export` answers: wall time of its error cases and of a plain export, each in a
fresh process, and which heavy modules each imported (`python -X importtime`).

    python bench/export_startup.py STORE_DIR [--repeat N] [--before DIR]

STORE_DIR holds (or gets, on first use) a tiny store, `mlflow.db`: the unit tests' sweep "tiny"
(16 px shapes, Conv-2 of width 4, one IMP lineage of 3 rounds and one filter lineage of 2). Each
command runs N times (default 3); the median is printed. `--before DIR`: also time, alternating
run by run (so that both see the same load), the code of an `lth_sweep` package in DIR (on
PYTHONPATH, ahead of the installed one), e.g. a copy of this tree with export/ as it was.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "mlflow", "pandas", "torchvision", "timm", "torch_pruning", "onnx", "onnxruntime")


def make_store(folder: Path) -> str:
    """The unit tests' sweep "tiny", logged in-process (no Ray)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.tiny import tiny_lineage, tiny_trunk
    from tests.unit.test_export import FILTER, IMP, TRAIN, log_sweep
    from lth_sweep.trainables.trunk import train_trunk

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if not (folder / "mlflow.db").exists():
        folder.mkdir(parents=True, exist_ok=True)
        trunk = train_trunk(tiny_trunk(**TRAIN))
        log_sweep(uri, "tiny", trunk, [tiny_lineage(train=TRAIN, **IMP), tiny_lineage(train=TRAIN, **FILTER)])
    return uri


def timed(argv: list[str], cwd: Path, pythonpath: Path | None = None) -> tuple[float, int, set[str]]:
    """(seconds, exit code, heavy modules imported) of one fresh `lth export ...`."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else None
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "lth_sweep.orchestrator.cli", *argv],
                          cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return seconds, done.returncode, {m for m in HEAVY if m in imported}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", type=Path, help="a folder holding an earlier lth_sweep package, to time as well")
    args = parser.parse_args()
    uri = make_store(args.store.absolute())
    base = ["export", "--sweep", "tiny", "--seed", "0", "--tracking-uri", uri]
    cases = {
        "error: --out exists": [*base, "--label", "imp", "--round", "1", "--out", "exists"],
        "error: no such label": [*base, "--label", "omp", "--round", "1", "--out", "new"],
        "error: unknown round": [*base, "--label", "imp", "--round", "9", "--out", "new"],
        "error: --slim on imp": [*base, "--label", "imp", "--round", "1", "--slim", "--out", "new"],
        "plain export (safetensors)": [*base, "--label", "imp", "--round", "2", "--out", "new"],
        "plain export (onnx)": [*base, "--label", "imp", "--round", "2", "--format", "onnx", "--out", "new.onnx"],
        "slim export (safetensors)": [*base, "--label", "filter", "--round", "2", "--slim", "--out", "new"],
    }
    variants = {"now": None, **({"before": args.before.absolute()} if args.before else {})}
    print(f"{'case':30} {'code':6} {'median s':>9} {'exit':>5}  heavy modules imported")
    for name, argv in cases.items():
        runs: dict[str, list] = {variant: [] for variant in variants}
        for _ in range(args.repeat):
            for variant, path in variants.items():
                with tempfile.TemporaryDirectory() as tmp:
                    (Path(tmp) / "exists").mkdir()
                    runs[variant].append(timed(argv, Path(tmp), path))
        for variant, done in runs.items():
            median = statistics.median(seconds for seconds, _, _ in done)
            print(f"{name:30} {variant:6} {median:9.2f} {done[-1][1]:5d}  {', '.join(sorted(done[-1][2])) or '-'}", flush=True)


if __name__ == "__main__":
    main()
