"""Bad configs end as the contract says: exit 2, one message naming the file or field, no
traceback, within seconds, before Ray starts and before anything is written (issue 18).

Each case runs `lth` in a subprocess (tests/support/lth_cli.py) where `ray.init` fails loudly; the
tracking store points outside the working directory and must not appear. A case is: its id, the
files it writes into the working directory, the `lth` arguments, the exit code and the text the
output must contain. Cases about the config alone use `--dry-run`; cases whose check needs the
files (weights) run the real `lth sweep`.
"""
from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support.lth_cli import files_in, run_lth

#: pydantic's internals, which no message may show
INTERNALS = re.compile(r"dict\[any|list\[any|function-(after|before|wrap|plain)|model-fields|tagged-union")

#: a small run, so that a config the checks let through would reach Ray at once
SMALL = "train: {epochs: 1}\npruning: {rounds: 1}\nseeds: 0\n"


def _grid_of_200_million() -> str:
    """10^4 seeds times aliased lists: 10^4 x (100 lr x 100 momentum x 2 batch sizes) lineages."""
    seeds = ", ".join(str(seed) for seed in range(10_000))
    values = ", ".join(f"0.{i:03d}" for i in range(1, 101))
    return f"seeds: [{seeds}]\ntrain: {{lr: &values [{values}], momentum: *values, batch_size: [32, 64]}}\n"


def _alias_bomb_in_model() -> str:
    """Seven levels of ten aliases: 10^7 values from 8 lines; `model` is a list of one of them."""
    levels = ["&l0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 7)]
    return "data: {name: shapes, spare: [" + ", ".join(levels) + "]}\nmodel: [*l6]\n"


def _resnet_misfit() -> dict:
    return {"conv1.weight": torch.zeros(1, 1, 1, 1), "bogus.weight": torch.zeros(1)}


RESNET = "model: {name: resnet18, width: 8, weights: w.pt}\n" + SMALL

CASES = [
    # 1. an empty config names the file; a config without `name` is named after its file
    ("empty-file", {"sweep.yaml": ""}, ["sweep", "sweep.yaml"], 2, "sweep.yaml: the file is empty"),
    ("only-comments", {"sweep.yaml": "# a sweep, some day\n\n   \n"}, ["sweep", "sweep.yaml"], 2, "sweep.yaml: the file is empty"),
    ("no-name-takes-the-file-s", {"my-grid.yaml": SMALL}, ["sweep", "my-grid.yaml", "--dry-run"], 0, "sweep my-grid ("),
    ("no-name-and-no-usable-stem", {"my grid.yaml": SMALL}, ["sweep", "my grid.yaml", "--dry-run"], 2, "name: not set, and the file name 'my grid'"),
    # 2. what a config expands to is bounded, with the count and the way to raise the limit
    ("grid-of-2e8-lineages", {"sweep.yaml": _grid_of_200_million()}, ["sweep", "sweep.yaml", "--dry-run"], 2,
     "200,000,000 lineages (10,000 seeds x 1 data x 1 model x 20,000 train x 1 pruning), more than max_lineages=10,000"),
    ("alias-bomb-in-model", {"sweep.yaml": _alias_bomb_in_model()}, ["sweep", "sweep.yaml", "--dry-run"], 2,
     "YAML values, more than the limit of 100,000"),
    # 3. an empty section names it
    ("pruning-empty", {"sweep.yaml": "pruning: []\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2, "pruning: an empty list sweeps over nothing"),
    ("data-empty", {"sweep.yaml": "data: []\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2, "data: an empty list sweeps over nothing"),
    ("model-empty", {"sweep.yaml": "model: []\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2, "model: an empty list sweeps over nothing"),
    ("train-empty", {"sweep.yaml": "train: []\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2, "train: an empty list sweeps over nothing"),
    ("seeds-empty", {"sweep.yaml": "seeds: []\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2, "seeds: an empty list sweeps over nothing"),
    # 4. model.weights: a weights file the loader reads, whose keys and shapes fit the model
    ("weights-not-a-checkpoint", {"sweep.yaml": RESNET, "w.pt": "not a checkpoint"}, ["sweep", "sweep.yaml"], 2,
     "w.pt as a state dict (torch.load with weights_only=True"),
    ("weights-bad-safetensors", {"sweep.yaml": RESNET.replace("w.pt", "w.safetensors"), "w.safetensors": "not a checkpoint"},
     ["sweep", "sweep.yaml"], 2, "w.safetensors as a safetensors file"),
    ("weights-a-pickled-module", {"sweep.yaml": RESNET, "w.pt": torch.nn.Linear(2, 2)}, ["sweep", "sweep.yaml"], 2,
     "Unsupported global: GLOBAL torch.nn.modules.linear.Linear"),
    ("weights-no-tensors", {"sweep.yaml": RESNET, "w.pt": {"epoch": 3, "arch": "resnet18"}}, ["sweep", "sweep.yaml"], 2,
     "w.pt holds no state dict of tensors (entries that are not tensors: 'epoch' (int), 'arch' (str))"),
    ("weights-do-not-fit", {"sweep.yaml": RESNET, "w.pt": _resnet_misfit()}, ["sweep", "sweep.yaml"], 2,
     "w.pt does not fit TorchvisionResNet: missing: bn1.bias"),
    ("weights-on-a-model-without", {"sweep.yaml": "model: {name: conv4, weights: w.pt}\n", "w.pt": _resnet_misfit()},
     ["sweep", "sweep.yaml", "--dry-run"], 2, "model.weights: conv4 has no weights option"),
    # 5. absurd values
    ("lr-inf", {"sweep.yaml": "train: {lr: .inf}\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2, "train.lr: inf is not a finite number"),
    ("lr-nan", {"sweep.yaml": "train: {lr: .nan}\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2, "train.lr: nan is not a finite number"),
    ("lr-inf-as-text", {"sweep.yaml": SMALL}, ["sweep", "sweep.yaml", "--dry-run", "--set", "train.lr=inf"], 2,
     "train.lr: inf is not a finite number"),
    ("inf-in-a-pruning-entry", {"sweep.yaml": "pruning: [{rate: 0.2}, {method: grasp, temperature: .inf}]\n"},
     ["sweep", "sweep.yaml", "--dry-run"], 2, "pruning[1].temperature: inf is not a finite number"),
    ("image-size-absurd", {"sweep.yaml": "data: {image_size: 100000}\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2,
     "data.image_size: 100000 pixels is beyond 1024"),
    ("epochs-a-boolean", {"sweep.yaml": "train: {epochs: true}\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2,
     "train.epochs: true is a yes/no value"),
    ("duplicate-key", {"sweep.yaml": "train:\n  epochs: 1\n  lr: 0.01\n  epochs: 2\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2,
     "sweep.yaml, line 4: duplicate key 'train.epochs', already set on line 2"),
    # 6. which entry, and no pydantic internals
    ("typo-in-a-pruning-entry", {"sweep.yaml": "pruning:\n  - {method: imp, rate: 0.2}\n  - {method: omp, ratee: 0.2}\n"},
     ["sweep", "sweep.yaml", "--dry-run"], 2, "pruning[1].ratee: Extra inputs are not permitted"),
    ("section-not-a-mapping", {"sweep.yaml": "model: 5\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2,
     "model: expected a mapping of fields, or a list of them"),
    # 7. (issue 29) characters YAML refuses, named with where they are
    ("nul-byte-in-the-file", {"sweep.yaml": "name: x\ntrain: {lr: 0.1\x00}\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2,
     "sweep.yaml, line 2, column 16 (byte 23): U+0000 (a NUL byte) is not allowed in YAML"),
    ("control-character-in-a-set-value", {"sweep.yaml": SMALL}, ["sweep", "sweep.yaml", "--dry-run", "--set", "train.lr=0.1\x1b"],
     2, "--set train.lr, column 4 (byte 3): U+001B (a control character) is not allowed in YAML"),
    # 8. (issue 29) values that would break once the sweep runs
    ("name-too-long", {"sweep.yaml": f"name: {'n' * 300}\n{SMALL}"}, ["sweep", "sweep.yaml", "--dry-run"], 2,
     "name: 300 characters, more than 128"),
    ("name-from-a-too-long-file-name", {f"{'f' * 200}.yaml": SMALL}, ["sweep", f"{'f' * 200}.yaml", "--dry-run"], 2,
     f"name: not set, and the file name '{'f' * 27}...{'f' * 28}' cannot stand for it (200 characters, more than 128)"),
    ("seed-beyond-64-bits", {"sweep.yaml": "seeds: [1, 18446744073709551616]\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2,
     "seeds[1]: 18446744073709551616 is outside 0 to 4294967295"),
    ("seed-negative", {"sweep.yaml": SMALL}, ["sweep", "sweep.yaml", "--dry-run", "--set", "seeds=-1"], 2,
     "seeds[0]: -1 is outside 0 to 4294967295"),
    ("rate-that-prunes-nothing", {"sweep.yaml": "pruning: [{rate: 0.2}, {rate: 1.0e-12}]\n"}, ["sweep", "sweep.yaml", "--dry-run"],
     2, "pruning[1].rate: 1e-12 is below 0.001"),
    ("experiment-empty", {"sweep.yaml": SMALL + "tracking: {experiment: ''}\n"}, ["sweep", "sweep.yaml", "--dry-run"], 2,
     "tracking.experiment: an empty name"),
    ("experiment-blank", {"sweep.yaml": SMALL}, ["sweep", "sweep.yaml", "--dry-run", "--set", "tracking.experiment=' '"], 2,
     "tracking.experiment: an empty name"),
    # 8. (issue 29) --set keys that name no field
    ("set-empty-key-between-dots", {"sweep.yaml": SMALL}, ["sweep", "sweep.yaml", "--dry-run", "--set", "train..lr=0.1"], 2,
     "--set train..lr: an empty key between two dots"),
    ("set-empty-key-at-the-end", {"sweep.yaml": SMALL}, ["sweep", "sweep.yaml", "--dry-run", "--set", "train.=0.1"], 2,
     "--set train.: an empty key after the last dot"),
    ("set-unclosed-bracket", {"sweep.yaml": SMALL}, ["sweep", "sweep.yaml", "--dry-run", "--set", "pruning[0=0.1"], 2,
     "--set pruning[0: 'pruning[0' is not NAME or NAME[INDEX]"),
    ("set-unclosed-bracket-before-a-dot", {"sweep.yaml": SMALL}, ["sweep", "sweep.yaml", "--dry-run", "--set", "pruning[0.rate=0.1"],
     2, "--set pruning[0.rate: 'pruning[0' is not NAME or NAME[INDEX]"),
]


def _write(folder: Path, files: dict) -> None:
    for name, content in files.items():
        path = folder / name
        if isinstance(content, str):
            path.write_text(content)
        else:  # tensors, or any object: as `torch.save` writes it
            torch.save(content, path)


@pytest.mark.parametrize("name,files,args,code,message", CASES, ids=[case[0] for case in CASES])
def test_bad_config_exits_before_ray_naming_what_is_wrong(tmp_path, name, files, args, code, message):
    work, store = tmp_path / "work", tmp_path / "store" / "mlflow.db"
    work.mkdir()
    store.parent.mkdir()
    _write(work, files)
    written = files_in(work)
    outcome = run_lth(args, work, env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"}, timeout=60)
    output = outcome.stderr + outcome.stdout
    assert outcome.code == code, output[-2000:]
    assert message in (outcome.stderr if code else outcome.stdout), output[-2000:]
    assert "RAY STARTED" not in output
    assert not outcome.traceback, output[-2000:]
    assert not INTERNALS.search(output), output[-2000:]
    if code:
        assert len(outcome.stderr) < 2000 and outcome.stderr.count("\n") <= 3, outcome.stderr[-2000:]  # one paragraph
    assert outcome.left == written  # nothing written where lth ran
    assert not store.exists()  # the tracking store is not created


NOT_REGULAR = [
    ("dev-zero", "/dev/zero", "/dev/zero: a character device, not a regular file"),
    ("a-fifo", "{tmp}/sweep.yaml", "sweep.yaml: a FIFO (named pipe), not a regular file"),
    ("a-folder", "{tmp}", "a folder, not a regular file"),
    ("50-mb-of-seeds", "{tmp}/big.yaml", "bytes, more than a config file may hold"),
]


@pytest.mark.parametrize("name,config,says", NOT_REGULAR, ids=[case[0] for case in NOT_REGULAR])
def test_a_config_that_is_not_a_small_regular_file_is_refused_in_seconds(tmp_path, name, config, says):
    """In a child process with a time and memory limit: reading /dev/zero never ends, opening a FIFO
    for reading blocks until a writer comes, a 50 MB YAML file takes minutes to compose (issue 29)."""
    if name == "a-fifo":
        os.mkfifo(tmp_path / "sweep.yaml")
    if name == "50-mb-of-seeds":
        seeds = ", ".join(str(seed) for seed in range(6_000_000))
        (tmp_path / "big.yaml").write_text(f"seeds: [{seeds}]\n")
        assert (tmp_path / "big.yaml").stat().st_size > 50_000_000
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "lth_sweep.orchestrator.cli", "sweep", config.format(tmp=tmp_path), "--dry-run"], cwd=tmp_path,
        capture_output=True, text=True, timeout=60, preexec_fn=_at_most_6_gb,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/x.db"},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert time.monotonic() - started < 30
    assert not (tmp_path / "x.db").exists()


def _at_most_6_gb() -> None:
    """The child's address space: a config read without bounds fails with MemoryError, not the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # importing torch maps ~4 GB
