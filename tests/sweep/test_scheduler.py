"""The optional round-level scheduler on a real sweep: a lineage far below its trunk is stopped,
keeps its rounds and their analyses, ends KILLED with the reason, does not fail the sweep, and
continues from its last round when the sweep runs again."""
from __future__ import annotations

import re

import pytest
import yaml
from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator.cli import main
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import display_name, make_plan
from tests.support.sweeps import TINY_ANALYSIS, assert_nothing_duplicated, rounds_of, runs_of, sweep_yaml

pytestmark = pytest.mark.slow

PRUNING = [
    {"method": "imp", "rate": 0.2, "rounds": 3, "rewind": "init"},  # stays near its trunk
    # 97% of the weights gone in round 1: near chance. Layers may empty later; that is not the point here.
    {"method": "random", "rate": 0.97, "rounds": 6, "allow_layer_collapse": True},
]
SCHEDULER = {"kind": "asha", "grace_rounds": 2, "reduction_factor": 3, "max_drop": 0.2}


def test_a_lineage_far_below_its_trunk_is_stopped_and_continued_on_rerun(ray_session, tmp_path, monkeypatch, capsys):
    config = yaml.safe_load(sweep_yaml("scheduled", PRUNING, analysis=TINY_ANALYSIS, slow=True))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({**config, "scheduler": SCHEDULER}))
    monkeypatch.chdir(tmp_path)
    plan = make_plan(load_config(tmp_path / "sweep.yaml"))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    kept, dropped = plan.lineages

    assert main(["sweep", "sweep.yaml"]) == 0  # stopping is not failing
    out = capsys.readouterr()
    runs = {r.data.tags["lth.id"]: r for r in runs_of(client, "lineage")}
    (trunk,) = runs_of(client, "trunk")
    dense = trunk.data.metrics["test/acc"]
    stopped = runs[dropped.id]
    accuracy = {m.step: m.value for m in client.get_metric_history(stopped.info.run_id, "test/acc")}
    reason = stopped.data.tags.get("lth.stopped", "")
    print(f"\ntrunk acc {dense:.4f}; {display_name(dropped)} by round: {accuracy}; lth.stopped: {reason!r}")
    far = min(r for r, acc in accuracy.items() if acc < dense - 0.2)  # the round whose result stops it
    assert stopped.info.status == "KILLED"
    # An analysed round's Tune row waits for its analysis, which runs while the next round trains, and
    # the trial does not wait for Tune's verdict on a row: one or two more rounds are in MLflow by the
    # stop, and the reason names both the round judged and the last one.
    stop = re.match(r"stopped by max_drop after round (\d+): test/acc -0\.\d+ against its trunk at round (\d+)", reason)
    assert stop and int(stop.group(2)) == far and int(stop.group(1)) in (far + 1, far + 2), reason
    first = int(stop.group(1))
    assert rounds_of(client, stopped.info.run_id) == list(range(1, first + 1))
    assert rounds_of(client, stopped.info.run_id, "analysis/seconds") == list(range(1, first + 1))  # not cut off
    assert f"{display_name(dropped)}: stopped by max_drop after round {first}" in out.err
    assert "[stopped early]" in out.out
    finished = runs[kept.id]
    assert finished.info.status == "FINISHED" and "lth.stopped" not in finished.data.tags
    assert rounds_of(client, finished.info.run_id) == [1, 2, 3] == rounds_of(client, finished.info.run_id, "analysis/seconds")

    assert main(["sweep", "sweep.yaml"]) == 0  # again: the stopped one continues, and is judged again
    err = capsys.readouterr().err
    assert f"{display_name(kept)}: already finished" in err
    assert f"{display_name(dropped)}: continues after round {first}" in err
    assert f"{display_name(dropped)}: round 1/" not in err
    again = client.get_run(stopped.info.run_id)
    second = int(re.match(r"stopped by max_drop after round (\d+)", again.data.tags["lth.stopped"]).group(1))
    print(f"rerun: continued after round {first}, stopped again after round {second}")
    assert again.info.status == "KILLED" and first < second <= first + 2
    assert rounds_of(client, stopped.info.run_id) == list(range(1, second + 1))
    assert rounds_of(client, stopped.info.run_id, "analysis/seconds") == list(range(1, second + 1))
    assert_nothing_duplicated(client)
