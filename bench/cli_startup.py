"""How fast the terminal answers: wall time and peak memory of `lth` commands that do not train.

    python bench/cli_startup.py STORE_URI [--sweep NAME] [--repeat N]

Runs `lth --help`, `lth --version` and `lth query --sweep NAME` against STORE_URI (a finished
sweep's store, e.g. sqlite:////path/mlflow.db) N times each (default 5) in fresh processes and
prints the median wall time and the largest peak resident memory (GNU time's %M). Also prints which heavy modules each command imports.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

HEAVY = ("torch", "mlflow", "ray", "captum", "open_clip", "sklearn", "matplotlib", "scipy")


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one fresh `python -m lth_sweep.orchestrator.cli ...`, by GNU time."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "lth_sweep.orchestrator.cli", *argv],
                         env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds, kilobytes = out.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(kilobytes) / 1024


def imported(argv: list[str], env: dict[str, str]) -> list[str]:
    code = (
        "import sys, runpy, contextlib, io\n"
        f"sys.argv = ['lth', *{argv!r}]\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    runpy.run_module('lth_sweep.orchestrator.cli', run_name='__main__')\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1].split(",") if out.stdout.strip() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--sweep", default="quickstart")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "MLFLOW_TRACKING_URI": args.store}
    commands = {
        "lth --help": ["--help"],
        "lth --version": ["--version"],
        f"lth query --sweep {args.sweep}": ["query", "--sweep", args.sweep, "--tracking-uri", args.store],
    }
    print(f"{'command':40} {'median s':>9} {'peak MB':>8}  heavy modules imported")
    for name, argv in commands.items():
        runs = [run(argv, env) for _ in range(args.repeat)]
        median = statistics.median(seconds for seconds, _ in runs)
        peak = max(mb for _, mb in runs)
        print(f"{name:40} {median:9.2f} {peak:8.0f}  {', '.join(imported(argv, env)) or '-'}")

if __name__ == "__main__":
    main()
