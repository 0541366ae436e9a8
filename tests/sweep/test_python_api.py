"""README's Python example, run as it stands, and what the API promises around it: it prints
nothing, and a config object or mapping goes through the same checks as a file."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import lth_sweep as lth
from tests.support.sweeps import ROOT

pytestmark = pytest.mark.slow


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_and_prints_only_what_it_asks(ray_session, tmp_path, monkeypatch, capfd):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    out = capfd.readouterr().out

    result, frame, verdicts, path = (namespace[k] for k in ("result", "frame", "verdicts", "path"))
    assert result.succeeded and len(result.table()) == 6  # one seed, six lineages
    assert set(frame["round"]) == {1, 2} and len(frame) == 12
    assert {row["method"] for row in verdicts["metrics"]["test/acc"]} == set(frame["label"])
    assert Path(path).is_file()
    # stdout holds the example's own prints and nothing from the library (Tune, Ray, MLflow)
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0].startswith("lineage") and "wrote" in lines[-1]
    assert not any("View run" in line or "Trial" in line for line in lines)

    # the same sweep again is read back from MLflow: the same rows, nothing trained
    again = lth.run_sweep(namespace["config"])
    assert again.summary("json") == result.summary("json")

    # the exported ticket predicts like the network the lineage evaluated, with onnxruntime alone
    check = subprocess.run(
        [sys.executable, "-S", "-c", "import sys; sys.path.append(sys.argv[1]); import onnxruntime; "
         "s = onnxruntime.InferenceSession(sys.argv[2]); print(s.get_inputs()[0].shape)",
         site_packages(), str(path)],
        capture_output=True, text=True, timeout=120,
    )
    assert check.returncode == 0, check.stderr


def site_packages() -> str:
    import onnxruntime

    return str(Path(onnxruntime.__file__).parent.parent)

