"""What the modules a sweep's processes import pull in: open_clip (with timm, ~0.45 s) only when a
CLIP model or concept bank is built, torchvision (1.7 s) only when a model built on it is, never in
the driver, a trial worker or an analysis actor of another model."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from tests.support.sweeps import ROOT

#: what the driver (`lth sweep`), a trial worker and an analysis actor import
PROCESS_MODULES = ("lth_sweep.orchestrator.sweep", "lth_sweep.trainables.trial", "lth_sweep.analysis.actors")


def modules_after(statements: str) -> set[str]:
    """The names in sys.modules of a fresh interpreter after running `statements`."""
    code = f"import json, sys\n{statements}\nprint(json.dumps(sorted(sys.modules)))"
    with tempfile.TemporaryDirectory() as home:  # matplotlib and MLflow write caches under $HOME
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": home},
        )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_a_sweep_process_imports_neither_open_clip_nor_torchvision_for_other_models():
    """One interpreter imports the three (each pulls in torch, Ray and MLflow: seconds apiece)."""
    loaded = modules_after("\n".join(f"import {module}" for module in PROCESS_MODULES))
    assert set(PROCESS_MODULES) <= loaded
    assert not {"open_clip", "timm", "torchvision"} & loaded


def test_building_a_torchvision_model_imports_it():
    loaded = modules_after(
        "from lth_sweep.trainables.models import build_model\n"
        "from lth_sweep.trainables.specs import ModelSpec\n"
        "build_model(ModelSpec(name='resnet18', width=4), in_channels=3, image_size=16, num_classes=3)"
    )
    assert "torchvision" in loaded


def test_building_a_clip_model_imports_it():
    loaded = modules_after(
        "from lth_sweep.trainables.models import build_model\n"
        "from lth_sweep.trainables.specs import ModelSpec\n"
        "build_model(ModelSpec(name='clip_rn50'), in_channels=3, image_size=32, num_classes=3)"
    )
    assert "open_clip" in loaded


def test_commands_that_do_not_train_import_neither_torch_nor_ray(tmp_path):
    """`lth --help`, `lth query`, `lth tickets`, `lth ui` answer in about a second, not the 2 s and
    650 MB that importing torch costs, nor MLflow's 2 s (bench/RESULTS.md)."""
    loaded = modules_after("import lth_sweep.orchestrator.cli; lth_sweep.orchestrator.cli.parser()")
    assert not {"torch", "ray", "mlflow", "pandas"} & loaded
    loaded = modules_after(
        "import lth_sweep.orchestrator.cli, lth_sweep.analysis.query, lth_sweep.analysis.sweep_verdicts, lth_sweep.orchestrator.preflight, lth_sweep.orchestrator.tracking_store"
    )
    # a query on a database store reads its tables directly: MLflow (2 s of imports) only where its client reads
    assert "lth_sweep.analysis.query" in loaded and not {"torch", "ray", "mlflow"} & loaded


def test_the_ticket_boards_actor_starts_without_torch():
    """Its process starts beside the trials at a sweep's start: no torch to import (~2 s)."""
    loaded = modules_after("import lth_sweep.trainables.ticket_board")
    assert "lth_sweep.trainables.ticket_board" in loaded and not {"torch", "numpy", "ray"} & loaded
