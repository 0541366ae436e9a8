"""The path users run on a cluster: `lth sweep CONFIG --address HEAD` against a multi-node Ray
(simulated on this machine with `ray.cluster_utils.Cluster`: a head with no CPUs, three 1-CPU
nodes). The lineages spread over the nodes (their runs' `lth.node`), none on the head, and the
sweep finishes with every lineage FINISHED."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.support.sweeps import LTH, ROOT, assert_nothing_duplicated, child_env, rounds_of, runs_of

pytestmark = pytest.mark.slow

CONFIG = """name: multi-node
seeds: [0, 1]
data: {name: digits, image_size: 8}
model: {name: lenet_300_100, width: 30}
train: {epochs: 1, batch_size: 64, lr: 0.01}
pruning:
  - {method: imp, rate: 0.5, rounds: 2}
  - {method: imp, rate: 0.3, rounds: 2}
  - {method: omp, rate: 0.5, rounds: 2}
  - {method: random, rate: 0.5, rounds: 2}
analysis: {enabled: false, twin: false}
tracking: {uri: "sqlite:///mlflow.db", experiment: faults}
"""


def test_a_sweep_on_a_multi_node_cluster_spreads_its_lineages(tmp_path, ray_tmp):
    (tmp_path / "sweep.yaml").write_text(CONFIG)
    done = subprocess.run([sys.executable, "-m", "tests.sweep.test_multi_node", str(tmp_path)], cwd=ROOT,
                          env=child_env(ray_tmp), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["exit"] == 0, report["log"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    lineages = runs_of(client, "lineage")
    assert len(lineages) == 8 and all(run.info.status == "FINISHED" for run in lineages)
    assert all(rounds_of(client, run.info.run_id) == [1, 2] for run in lineages)
    nodes = {run.data.tags["lth.node"] for run in lineages}
    print(f"\nlineages per node: { {n[:8]: sum(r.data.tags['lth.node'] == n for r in lineages) for n in nodes} }")
    assert len(nodes) >= 2 and nodes <= set(report["workers"]), (nodes, report)
    assert report["head"] not in nodes
    assert_nothing_duplicated(client)


def on_own_cluster(workdir: Path) -> dict:
    """(child process) A head with no CPUs and three 1-CPU nodes; `lth sweep --address` against it."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(3)]
    cluster.wait_for_nodes()
    ids = {"head": cluster.head_node.node_id, "workers": [node.node_id for node in workers]}
    try:
        done = subprocess.run(LTH + ["sweep", "sweep.yaml", "--address", cluster.address], cwd=workdir,
                              capture_output=True, text=True, timeout=500)
    finally:
        cluster.shutdown()
    return {"exit": done.returncode, "log": done.stderr[-4000:], **ids}


if __name__ == "__main__":
    print(json.dumps(on_own_cluster(Path(sys.argv[1]))))
