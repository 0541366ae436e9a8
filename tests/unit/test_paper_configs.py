"""The shipped configs: every one plans (and estimates its compute) without its data; a real run
without the data stops naming the path. A paper's set-up run end to end on miniature data in its
official format: tests/sweep/test_paper_configs_sweep.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from lth_sweep.orchestrator.cli import main
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.estimate import forward_macs, trunk_cost
from lth_sweep.orchestrator.plan import make_plan
from lth_sweep.trainables.data.describe import describe

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FRANKLE = CONFIGS / "papers" / "frankle-carbin.yaml"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("**/*.yaml")), ids=lambda p: p.stem)
def test_every_config_plans_and_estimates_without_its_data(path, workdir, capsys):
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for part in ("lineage(s)", "MACs/image", "compute: ", "resources: each trunk task and each lineage trial asks Ray for",
                 "wall time (rough): "):
        assert part in out, part
    assert "?" not in out.split("trunks:")[1].split("lineages:")[0]  # every model's MACs were counted
    assert list(workdir.iterdir()) == []


def test_a_real_run_without_the_data_stops_naming_the_path(workdir, capsys):
    assert main(["sweep", str(FRANKLE)]) == 2
    err = capsys.readouterr().err
    assert "data.path" in err and "/data/mnist" in err and "Traceback" not in err
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    "overrides,named",
    [
        (["train.device=cuda"], "gpus_per_trial"),  # Ray would give the trial no GPU
        (["resources.gpus_per_trial=0.5", "train.device=cpu"], "gpus_per_trial"),  # a GPU reserved for nothing
    ],
)
def test_devices_and_gpu_requests_must_agree(overrides, named, workdir, capsys):
    args = [item for override in overrides for item in ("--set", override)]
    assert main(["sweep", str(FRANKLE), "--dry-run", *args]) == 2
    assert named in capsys.readouterr().err


def test_the_estimate_counts_the_papers_network_exactly():
    config = load_config(FRANKLE, ["seeds=[0]"])
    (trunk, _), = make_plan(config, check_paths=False).trunks.values()
    data = describe(trunk.data)
    assert data.shape == (1, 28, 28) and data.train == 55_000  # 5,000 held out for validation, as in the paper
    macs = forward_macs(trunk.model, data)
    assert macs == 784 * 300 + 300 * 100 + 100 * 10  # LeNet-300-100
    cost = trunk_cost(trunk)
    assert cost.iterations == 55 * 917 == trunk.total_iterations() and cost.images == 55 * 55_000
    assert cost.flops == 2 * macs * (3 * 55 * 55_000 + 10_000)


def test_a_fractional_gpu_config_says_what_it_asks_for(workdir, capsys):
    assert main(["sweep", str(CONFIGS / "papers" / "frankle-carbin-conv.yaml"), "--dry-run", "--set", "seeds=[0]"]) == 0
    out = capsys.readouterr().out
    assert "asks Ray for {CPU: 1, GPU: 0.25} and trains on the GPU" in out
