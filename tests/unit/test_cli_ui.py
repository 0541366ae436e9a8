"""`lth ui` shows the store a sweep logs to: a config's `tracking.uri`, else $MLFLOW_TRACKING_URI,
else ./mlflow.db. An MLflow server serves its own UI: `lth ui` prints its URL and exits 0 instead of
starting a second one. `lth --version` names the installed lth-sweep."""
from __future__ import annotations

import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from lth_sweep.orchestrator.cli import ui_command, ui_store
from tests.support.lth_cli import run_lth
from tests.support.sweeps import ROOT, sweep_yaml

LTH = str(Path(sys.executable).with_name("lth"))  # the entry point pip installed
SERVER = "http://127.0.0.1:5999"  # never contacted


def lth(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONPATH": str(ROOT)}
    return subprocess.run([LTH, *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=120)


def write_config(folder: Path, uri: str) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(sweep_yaml("ui", [{"rate": 0.5, "rounds": 2}], uri=uri))
    return path


def test_a_server_s_url_is_printed_not_served(tmp_path):
    write_config(tmp_path, SERVER)
    for args in (["ui", "sweep.yaml"], ["ui", "--config", "sweep.yaml"]):
        done = lth(args, tmp_path)
        assert (done.returncode, done.stdout) == (0, SERVER + "\n"), done.stderr
        assert "MLflow server" in done.stderr
    done = lth(["ui"], tmp_path, env={"MLFLOW_TRACKING_URI": "https://mlflow.example.org"})
    assert (done.returncode, done.stdout) == (0, "https://mlflow.example.org\n"), done.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "sweep.yaml"]  # nothing created


def test_the_version_is_the_installed_one(tmp_path):
    done = lth(["--version"], tmp_path)
    assert (done.returncode, done.stdout) == (0, f"lth-sweep {version('lth-sweep')}\n"), done.stderr


def test_a_sqlite_store_is_served_by_mlflow_ui_from_the_config_the_environment_or_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert ui_store(None, None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/env.db")
    assert ui_store(None, None) == "sqlite:////elsewhere/env.db"
    config = write_config(tmp_path, "sqlite:///runs/sweep.db")  # relative to where `lth` runs, as for the sweep
    assert ui_store(str(config), None) == f"sqlite:///{tmp_path / 'runs' / 'sweep.db'}"
    assert ui_store(str(config), "sqlite:////given.db") == "sqlite:////given.db"

    command = ui_command(ui_store(str(config), None), "0.0.0.0", 5123)
    assert Path(command[0]).name == "mlflow" and Path(command[0]).exists()
    assert command[1:] == [
        "ui", "--backend-store-uri", f"sqlite:///{tmp_path / 'runs' / 'sweep.db'}", "--host", "0.0.0.0", "--port", "5123",
        "--workers", "1",
    ]


@pytest.mark.parametrize("args, says", [
    (["ui", "missing.yaml"], "missing.yaml"),
    (["ui", "sweep.yaml", "--config", "other.yaml"], "two configs"),
])
def test_a_bad_config_is_refused(tmp_path, args, says):
    write_config(tmp_path, SERVER)
    outcome = run_lth(args, tmp_path)
    assert outcome.code == 2 and says in outcome.stderr and not outcome.traceback, outcome.stderr


@pytest.mark.parametrize("port", ["99999", "0", "http"])
def test_a_port_out_of_range_is_refused_and_nothing_is_created(tmp_path, port):
    done = lth(["ui", "--port", port], tmp_path)
    assert done.returncode == 2 and "argument --port" in done.stderr and "1 to 65535" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no ./mlflow.db


def test_a_port_in_use_is_refused_naming_it_and_nothing_is_created(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = lth(["ui", "--port", str(port)], tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr and "--port" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no ./mlflow.db


def test_a_store_the_ui_cannot_show_is_refused_before_mlflow_starts(tmp_path):
    with socket.socket() as taken:  # were MLflow started, it would stop at once
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for args, says in (
            (["--backend-store-uri", "sqlite://"], "sqlite:// (--backend-store-uri): an in-memory SQLite database"),
            (["--backend-store-uri", "sqlite:///no/such/folder/mlflow.db"], "directory no/such/folder does not exist"),
        ):
            outcome = run_lth(["ui", *args, "--port", port], tmp_path)
            assert outcome.code == 2 and says in outcome.stderr, outcome.stderr
            assert not outcome.traceback and outcome.left == []
