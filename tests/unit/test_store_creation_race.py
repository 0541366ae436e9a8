"""Several `lth sweep` drivers creating one new SQLite store at the same moment (issue 29): MLflow
creates its tables without a lock, so all but one of them failed (`table latest_metrics already
exists`, `duplicate column name: step`, an alembic "Online migration expected to match one row").
`orchestrator.tracking_store.create_store` creates it under a lock: every one succeeds.

Real processes, released together: each imports MLflow, says it is ready, and waits for a file."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

RACERS = 4

RACER = """
import sys, time
from pathlib import Path
from mlflow.tracking import MlflowClient
from lth_sweep.orchestrator.tracking_store import create_store

uri, folder, me = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
(folder / f"ready-{me}").touch()
while not (folder / "go").exists():
    time.sleep(0.002)
create_store(uri)
client = MlflowClient(uri)
client.create_experiment(f"racer-{me}")
print(len(client.search_experiments()))
"""


def test_racing_drivers_all_create_and_use_one_new_store(tmp_path):
    store, gate = tmp_path / "store" / "mlflow.db", tmp_path / "gate"
    store.parent.mkdir()
    gate.mkdir()
    root = Path(__file__).parents[2]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, f"sqlite:///{store}", str(gate), str(i)], cwd=root,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(RACERS)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(list(gate.glob("ready-*"))) < RACERS and time.monotonic() < deadline:
            assert all(racer.poll() is None for racer in racers), [racer.communicate() for racer in racers]
            time.sleep(0.05)
        (gate / "go").touch()
        done = [racer.communicate(timeout=120) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
    failed = [err[-1500:] for racer, (_, err) in zip(racers, done) if racer.returncode != 0]
    assert not failed, failed
    with sqlite3.connect(store) as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM experiments")}
    assert names == {"Default", *(f"racer-{i}" for i in range(RACERS))}
    assert sorted(path.name for path in store.parent.iterdir()) == ["mlflow.db"]  # no lock file or journal left
