"""What the benchmarks share: the repository on sys.path, the `--config`/`--set` options (the
quickstart by default), and the seed-0 trunk such a config plans."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def config_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    return parser


def seed0_trunk(config_path: str, overrides: list[str]):
    """(the sweep config, its first trunk's spec, that trunk's rewind iterations) with seeds = [0]."""
    from lth_sweep.orchestrator.config import load_config
    from lth_sweep.orchestrator.plan import make_plan

    config = load_config(config_path, ["seeds=[0]", *overrides])
    (trunk, rewinds), *_ = make_plan(config).trunks.values()
    return config, trunk, tuple(rewinds)
