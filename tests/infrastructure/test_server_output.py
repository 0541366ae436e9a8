"""Machine-readable output stays machine-readable against a real MLflow server: `lth sweep`,
`lth query` and `lth tickets` with `--format json` (and csv) print only their document on stdout,
although MLflow's client writes "View run ... at: http://..." to stdout whenever it ends a run on
an HTTP store. Run as a user runs them: the installed `lth` script, in a child process."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from tests.support.sweeps import TINY_ANALYSIS, child_env, sweep_yaml

pytestmark = pytest.mark.slow

LTH = str(Path(sys.executable).with_name("lth"))  # the entry point pip installed
SWEEP = "server-output"
PRUNING = [{"method": "imp", "rate": 0.5, "rounds": 2}, {"method": "omp", "rate": 0.5, "rounds": 2}]


@pytest.fixture
def lth(server, sweep_user, tmp_path):
    """Runs `lth ARGS` in tmp_path with the sweep user's credentials in the environment only;
    asserts exit 0 and returns stdout and stderr."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="lths", dir="/tmp"))  # Ray's socket paths stay short
    username, password = sweep_user
    env = {**child_env(ray_tmp), "MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password}

    def run(*args: str) -> tuple[str, str]:
        done = subprocess.run([LTH, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"lth {' '.join(args)}: exit {done.returncode}\n{done.stderr[-5000:]}"
        return done.stdout, done.stderr

    yield run
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_json_and_csv_on_stdout_stay_parseable_with_an_http_store(server, lth, tmp_path):  # noqa: F811
    (tmp_path / "sweep.yaml").write_text(sweep_yaml(SWEEP, PRUNING, analysis=TINY_ANALYSIS, uri=server.url))
    out, err = lth("sweep", "sweep.yaml", "--format", "json")
    assert "View run" in err and f"at: {server.url}/#/experiments/" in err  # MLflow's prints: on stderr
    summary = json.loads(out)
    assert sorted(row["method"] for row in summary) == ["imp", "omp"] and all(row["rounds"] == "2/2" for row in summary)
    assert not (tmp_path / "mlflow.db").exists()
    again = json.loads(lth("sweep", "sweep.yaml", "--format", "json")[0])  # finished: read back from MLflow, no Ray
    assert [row["lineage"] for row in again] == [row["lineage"] for row in summary]

    selector = ("--sweep", SWEEP, "--tracking-uri", server.url)
    rows = json.loads(lth("query", *selector, "--format", "json")[0])
    assert sorted((row["method"], row["round"]) for row in rows) == [("imp", 1), ("imp", 2), ("omp", 1), ("omp", 2)]
    assert all(0 <= row["test/acc"] <= 1 for row in rows)
    table = pd.read_csv(io.StringIO(lth("query", *selector, "--format", "csv")[0]))
    assert len(table) == 4 and {"lineage", "round", "test/acc", "dense/test/acc"} <= set(table.columns)

    verdicts = json.loads(lth("tickets", *selector, "--format", "json")[0])
    assert verdicts["metrics"] and "test/acc" in verdicts["metrics"]
