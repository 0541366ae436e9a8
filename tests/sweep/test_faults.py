"""Faults a sweep must survive, each one real: workers and drivers SIGKILLed, a Ray node removed
from a running cluster, an MLflow server stopped and restarted, files truncated on disk.

After each: one MLflow run per lineage/trunk id, no metric step logged twice, and where a lineage
was interrupted, the same masks (bit for bit) and metrics as an uninterrupted computation.

Tests that need their own Ray (a driver that starts one, a multi-node cluster) run it in a child
process with a private RAY_TMPDIR, so neither the test session's Ray nor anyone else's is touched.
`python -m tests.sweep.test_faults node-loss DIR` is the child of the node-loss test.

Checkpoints and stored trunks refused for their checksums, without a sweep: tests/unit/test_checkpoint_integrity.py.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from deploy.local_mlflow_server import free_port
from lth_sweep.orchestrator.cli import main
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import display_name, make_plan
from lth_sweep.orchestrator.summary import succeeded
from lth_sweep.orchestrator.sweep import run_sweep
from lth_sweep.orchestrator.trunk_sharing import trunk_name
from lth_sweep.orchestrator.tuner import experiment_name
from tests.support.sweeps import (
    LTH, ROOT, TINY_ANALYSIS, Killer, assert_equals_uninterrupted, assert_nothing_duplicated, child_env, rounds_of,
    runs_of, sweep_yaml,
)
from lth_sweep.trainables import record
from lth_sweep.trainables.checkpoint_folder import experiment_folder


def descendants(pid: int) -> list[int]:
    """All processes below `pid`, from /proc (no psutil here)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()[-60:]
    except OSError:
        return "?"


# --- 5a. MLflow unreachable at start ---------------------------------------------------------------

@pytest.mark.slow
def test_an_unreachable_tracking_server_stops_the_sweep_in_seconds_before_ray(tmp_path, ray_tmp):
    port = free_port()  # bound and released: nothing listens there
    uri = f"http://127.0.0.1:{port}"
    (tmp_path / "sweep.yaml").write_text(sweep_yaml("unreachable", [{"rate": 0.5, "rounds": 1}], uri=uri))
    started = time.monotonic()
    done = subprocess.run(LTH + ["sweep", "sweep.yaml"], cwd=tmp_path, env=child_env(ray_tmp),
                          capture_output=True, text=True, timeout=120)  # MLflow's own retries: ~4 min
    seconds = time.monotonic() - started
    print(f"\nunreachable MLflow: exit {done.returncode} after {seconds:.1f} s (process start included)")
    assert done.returncode == 2, done.stderr
    assert uri in done.stderr and "connection refused" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(ray_tmp.rglob("session_*")), "Ray was started"
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "lth-runs").exists()

    from lth_sweep.orchestrator.tracking_store import TrackingUnavailable, check_tracking

    silent = socket.socket()  # accepts connections (backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    for where, said in ((uri, "connection refused"), (f"http://127.0.0.1:{silent.getsockname()[1]}", "connected, but no answer within 2 s")):
        started = time.monotonic()
        with pytest.raises(TrackingUnavailable, match=said):
            check_tracking(where, timeout=2, answer_timeout=2)
        print(f"probe of {where}: {said} after {time.monotonic() - started:.2f} s")
    silent.close()


# --- 2. the driver killed mid-sweep, then resumed (6: with one stored trunk truncated) -------------

@pytest.mark.slow
def test_a_killed_driver_resumes_without_retraining_or_duplicating(tmp_path, ray_tmp):
    """Also: a lineage interrupted after round r continues after round r (from its checkpoint in
    the storage path), not from round 1."""
    pruning = [  # run longest first: the 4-round lineage finishes while the 6-round one is midway
        {"rate": 0.5, "rounds": 2, "rewind": "init"}, {"rate": 0.5, "rounds": 4, "rewind": 3},
        {"rate": 0.3, "rounds": 6, "rewind": 5},  # "imp@5": display names tell the three apart
    ]
    (tmp_path / "sweep.yaml").write_text(sweep_yaml("driver-kill", pruning, seeds=(0, 1)))
    plan = make_plan(load_config(tmp_path / "sweep.yaml"))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    env = child_env(ray_tmp)
    with open(tmp_path / "first.err", "w") as err:
        driver = subprocess.Popen(LTH + ["sweep", "sweep.yaml"], cwd=tmp_path, env=env, stdout=err, stderr=err)
    deadline = time.monotonic() + 300
    finished: set[str] = set()
    try:
        midway = False
        while time.monotonic() < deadline and driver.poll() is None and not (finished and midway):
            try:
                runs = runs_of(client, "lineage")
                finished = {r.data.tags["lth.id"] for r in runs if r.info.status == "FINISHED"}
                midway = any(len(rounds_of(client, r.info.run_id)) >= 2 for r in runs if r.info.status != "FINISHED")
            except Exception:  # the store is being created
                pass
            time.sleep(0.1)
        assert driver.poll() is None, f"the sweep ended before it could be killed:\n{(tmp_path / 'first.err').read_text()}"
        below = descendants(driver.pid)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    time.sleep(5)
    survivors = {pid: command_of(pid) for pid in below if alive(pid)}
    print(f"\ndriver killed with {len(finished)} of {len(plan.lineages)} lineages finished; {len(below)} processes "
          f"under it, {len(survivors)} still alive 5 s later (left running through the resumed sweep, then "
          f"killed): {sorted(survivors.values())}")
    try:
        resume_after_the_kill(tmp_path, plan, client, env)
    finally:
        for pid in survivors:  # whatever of its Ray did not die with it: only this driver's processes
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def resume_after_the_kill(tmp_path: Path, plan, client: MlflowClient, env: dict) -> None:
    """The same command again, while what survived of the killed driver's Ray still runs: it must
    not be affected by them."""

    # What MLflow holds now is what the resumed sweep sees (a trial may finish as its driver dies).
    lineages = {r.data.tags["lth.id"]: r for r in runs_of(client, "lineage")}
    finished = {lid for lid, run in lineages.items() if run.info.status == "FINISHED"}
    at_kill = {s.id: rounds_of(client, lineages[s.id].info.run_id) for s in plan.lineages}
    print("rounds logged at the kill:", {display_name(s): at_kill[s.id] for s in plan.lineages})
    unfinished = [spec for spec in plan.lineages if spec.id not in finished]
    assert finished and unfinished, "the driver was not killed mid-sweep"
    # Truncate a stored trunk that the resumed sweep needs: it must be detected and retrained.
    needed = {spec.trunk.id for spec in unfinished}
    trunks = {r.data.tags["lth.id"]: r for r in runs_of(client, "trunk")}
    assert all(trunks[tid].info.status == "FINISHED" for tid in needed)
    corrupt = sorted(needed)[-1]
    final = Path(urlparse(trunks[corrupt].info.artifact_uri).path) / "trunk" / "final.safetensors"
    final.write_bytes(final.read_bytes()[: final.stat().st_size // 2])

    done = subprocess.run(LTH + ["sweep", "sweep.yaml", "--resume"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-5000:]
    for spec in plan.lineages:
        said = f"{display_name(spec)}: already finished"
        assert (said in done.stderr) == (spec.id in finished), said
    for tid in needed - {corrupt}:
        assert f"trunk {tid} ({trunk_name(plan.trunks[tid][0])}): reused from MLflow run" in done.stderr
        assert f"trunk {tid} ({trunk_name(plan.trunks[tid][0])}): training" not in done.stderr
    assert "trunk/final.safetensors is truncated or altered" in done.stderr and "; retraining" in done.stderr
    assert "truncated or altered" in client.get_run(trunks[corrupt].info.run_id).data.tags["lth.notes"]

    continued = {}
    for spec in plan.lineages:  # checkpoints lag MLflow by at most the round being written
        logged = len(at_kill[spec.id]) if spec.id not in finished else 0
        said = re.search(rf"{re.escape(display_name(spec))}: continues after round (\d+)", done.stderr)
        if said:
            continued[display_name(spec)] = (logged, int(said.group(1)))
            assert logged - 1 <= int(said.group(1)) <= logged
            assert f"{display_name(spec)}: round 1/" not in done.stderr  # round 1 was not trained again
            assert "left by an earlier driver" in client.get_run(lineages[spec.id].info.run_id).data.tags["lth.notes"]
        else:
            assert logged <= 1, f"{display_name(spec)} had {logged} rounds logged and was not continued"
    print(f"continued (rounds logged at the kill, continued after round): {continued}")
    assert continued

    histories = assert_nothing_duplicated(client)
    assert len(runs_of(client)) == 1 + len(plan.trunks) + len(plan.lineages)
    for spec in plan.lineages:
        run = client.get_run(lineages[spec.id].info.run_id)
        assert run.info.status == "FINISHED"
        assert rounds_of(client, run.info.run_id) == list(range(1, spec.pruning.rounds + 1))
        if spec.id not in finished:
            assert_equals_uninterrupted(client, run, spec, tmp_path)
    print(f"resumed: exit 0; {histories} metric histories checked, none with a step twice")


# --- 3. a node lost ------------------------------------------------------------------------------

def run_on_own_cluster(mode: str, tmp_path: Path, ray_tmp: Path) -> tuple[dict, str]:
    """Runs `python -m tests.sweep.test_faults MODE DIR` (a sweep on its own multi-node Ray); returns
    its report and its stderr (the sweep's log and Ray's)."""
    log = tmp_path / f"{mode}.err"
    with open(log, "w") as err:
        done = subprocess.run([sys.executable, "-m", "tests.sweep.test_faults", mode, str(tmp_path)], cwd=ROOT,
                              env=child_env(ray_tmp), stdout=subprocess.PIPE, stderr=err, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + log.read_text()[-5000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n{mode}: {json.dumps(report, indent=1)}")
    return report, log.read_text()


@pytest.mark.slow
def test_a_lost_node_is_survived_with_trained_and_stored_trunks(tmp_path, ray_tmp):
    report, log = run_on_own_cluster("node-loss", tmp_path, ray_tmp)
    first, second = report["trained"], report["stored"]
    assert first["removed_after_rounds"] >= 1 and all(s == "FINISHED" for s in first["status"].values())
    assert second["trunk_only_on"] == "removed worker" and all(s == "FINISHED" for s in second["status"].values())
    assert "reused from MLflow run" in log
    # Ray's own word that the loaded trunk, gone with its node, was rebuilt by rerunning its task:
    assert "lost objects by resubmitting their tasks" in log.split("reused from MLflow run", 1)[1]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert_nothing_duplicated(client)
    for run in runs_of(client, "lineage"):
        assert rounds_of(client, run.info.run_id) == [1, 2, 3, 4]


@pytest.mark.slow
def test_the_analysis_actor_s_node_lost_loses_no_analysis(tmp_path, ray_tmp):
    report, log = run_on_own_cluster("actor-loss", tmp_path, ray_tmp)
    assert report["removed_after_analyses"] >= 1 and report["actor_node_removed"]
    assert report["actor_restarts"] >= 1 and report["actor_node_after"] != report["actor_node_before"]
    assert all(s == "FINISHED" for s in report["status"].values())
    # Ray's word that the trunk reference, gone with the actor's node, was rebuilt:
    assert "lost objects by resubmitting their tasks" in log
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert_nothing_duplicated(client)
    lineages = runs_of(client, "lineage")
    assert len(lineages) == 2
    for run in lineages:
        assert rounds_of(client, run.info.run_id) == [1, 2, 3, 4]
        assert rounds_of(client, run.info.run_id, "analysis/seconds") == [1, 2, 3, 4]
        assert rounds_of(client, run.info.run_id, "xai/gradcam_rank_corr") == [1, 2, 3, 4]
    (trunk,) = runs_of(client, "trunk")
    assert rounds_of(client, trunk.info.run_id, "analysis/seconds") == [0]


# --- 1. trial workers killed mid-round, several times across lineages -----------------------------

#: lineage (plan order) -> the rounds after which its worker is SIGKILLed, each kill in the next round
KILLS = {0: [1, 3], 1: [2], 2: [1]}
TRUNCATED = 2  #: this lineage's checkpoint is truncated on disk just before its worker is killed


@pytest.mark.slow
def test_workers_killed_mid_round_change_nothing(ray_session, tmp_path, monkeypatch):
    """Also 6: one lineage's checkpoint truncated before its worker dies is refused by its
    checksum, named in the run's `lth.notes`, and the lineage replayed from round 1."""
    pruning = [  # the second kill of lineage 0 lands in round 4 of 5: never its last round
        {"rate": 0.5, "rounds": 5, "rewind": "init"},
        {"rate": 0.5, "rounds": 4, "rewind": 3},
        {"rate": 0.3, "rounds": 4, "rewind": "init"},
    ]
    (tmp_path / "sweep.yaml").write_text(sweep_yaml("worker-kill", pruning, analysis=TINY_ANALYSIS, slow=True))
    monkeypatch.chdir(tmp_path)
    plan = make_plan(load_config(tmp_path / "sweep.yaml"))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    truncated: list[Path] = []

    def truncate_checkpoints(lineage_id: str, checkpoint: Path) -> None:
        if lineage_id == plan.lineages[TRUNCATED].id:
            file = checkpoint / "weights.safetensors"
            file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
            truncated.append(file)

    experiment = experiment_folder(str(tmp_path / "lth-runs"), experiment_name(plan))
    killer = Killer([spec.id for spec in plan.lineages], KILLS, before_kill=truncate_checkpoints, experiment=experiment)
    rows = run_sweep(plan, callbacks=[killer]).rows
    assert all(succeeded(row) for row in rows)
    kills = len(killer.killed)
    print(f"\nworkers killed: {kills} across {len({k[0] for k in killer.killed})} lineages: {killer.killed}")
    assert kills == 4 and len({k[0] for k in killer.killed}) == 3, killer.killed
    assert truncated
    notes = {r.data.tags["lth.id"]: r.data.tags.get("lth.notes", "") for r in runs_of(client, "lineage")}
    print(f"checkpoint {truncated[0].name} truncated; lth.notes: {notes[plan.lineages[TRUNCATED].id]!r}")
    for index, spec in enumerate(plan.lineages):
        said = "weights.safetensors is truncated or altered" in notes[spec.id] and "restarted from round 1" in notes[spec.id]
        assert said == (index == TRUNCATED), notes[spec.id]

    histories = assert_nothing_duplicated(client)
    assert len(runs_of(client)) == 1 + 1 + 3
    validation = plan.config.analysis.early_stopping_every
    for spec in plan.lineages:
        (run,) = [r for r in runs_of(client, "lineage") if r.data.tags["lth.id"] == spec.id]
        assert run.info.status == "FINISHED"
        # a new worker finished it (a killed one may have finished another lineage before it was reused)
        assert run.data.tags["lth.worker"] not in {worker for lid, _, worker in killer.killed if lid == spec.id}
        rounds = list(range(1, spec.pruning.rounds + 1))
        assert rounds_of(client, run.info.run_id) == rounds
        analysed = [key for key in run.data.metrics if key.startswith(("xai/", "calib/", "analysis/"))]
        assert {"analysis/seconds", "calib/ece", "xai/gradcam_rank_corr"} <= set(analysed)
        for key in analysed:
            assert rounds_of(client, run.info.run_id, key) == rounds, key
        assert_equals_uninterrupted(client, run, spec, tmp_path, validation_every=validation)
        ticket = load_file(client.download_artifacts(run.info.run_id, record.TICKET_MASKS, str(tmp_path / "ticket")))
        last = load_file(client.download_artifacts(run.info.run_id, record.round_masks(rounds[-1]), str(tmp_path / "last")))
        assert ticket.keys() == last.keys() and all(torch.equal(ticket[k], last[k]) for k in ticket)  # the lineage's ticket
    print(f"{histories} metric histories checked: no step twice; masks and metrics equal an uninterrupted run")


# --- 4. a lineage whose trunk diverges ---------------------------------------------------------------

@pytest.mark.slow
def test_a_diverging_lineage_fails_alone_with_its_reason(ray_session, tmp_path, monkeypatch, capsys):
    """`train.lr` is a trunk field: a grid over it makes a second trunk, which diverges (NaN loss).
    Its lineage ends FAILED with the reason; the other lineage finishes; exit code 1."""
    config = sweep_yaml("diverge", [{"rate": 0.5, "rounds": 2, "rewind": "init"}], train={"optimizer": "sgd", "lr": [0.05, 1.0e8]})
    (tmp_path / "sweep.yaml").write_text(config)
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "sweep.yaml"]) == 1
    captured = capsys.readouterr()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    lineages = {r.data.params["trunk.train.lr"]: r for r in runs_of(client, "lineage")}
    failed, fine = lineages["100000000.0"], lineages["0.05"]
    print(f"\ndiverged lineage: {failed.info.status}, lth.error {failed.data.tags.get('lth.error')!r}")
    assert failed.info.status == "FAILED" and "DivergedError: training diverged" in failed.data.tags["lth.error"]
    assert fine.info.status == "FINISHED" and rounds_of(client, fine.info.run_id) == [1, 2]
    assert "[FAILED]" in captured.out  # the summary table
    assert "FAILED: trunk" in captured.err and "DivergedError" in captured.err and "Traceback" not in captured.err
    trunks = {r.data.params["train.lr"]: r for r in runs_of(client, "trunk")}
    assert trunks["100000000.0"].info.status == "FAILED" and "diverged" in trunks["100000000.0"].data.tags["lth.error"]
    assert trunks["0.05"].info.status == "FINISHED"
    (parent,) = runs_of(client, "sweep")
    assert parent.info.status == "FAILED"
    assert_nothing_duplicated(client)


# --- 5b. the MLflow server down for a while mid-sweep -------------------------------------------------

def start_mlflow(root: Path, port: int) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with open(root / "server.log", "a") as log:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
        assert server.poll() is None, (root / "server.log").read_text()[-3000:]
    raise AssertionError(f"mlflow server not up:\n{(root / 'server.log').read_text()[-3000:]}")


def stop_mlflow(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.mark.slow
def test_an_mlflow_outage_mid_sweep_loses_nothing(ray_session, tmp_path, monkeypatch):
    root = tmp_path / "server"
    root.mkdir()
    port = free_port()
    server = start_mlflow(root, port)
    url = f"http://127.0.0.1:{port}"
    pruning = [{"rate": 0.5, "rounds": 5, "rewind": "init"}, {"rate": 0.5, "rounds": 5, "rewind": 3}]
    (tmp_path / "sweep.yaml").write_text(sweep_yaml("outage", pruning, uri=url))
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(url)
    outage: dict[str, float] = {}

    def outage_after_the_first_round() -> None:
        nonlocal server
        while time.monotonic() - started < 300:
            runs = runs_of(client, "lineage")
            if runs and any(rounds_of(client, r.info.run_id) for r in runs):
                stop_mlflow(server)  # SIGKILL: requests in flight are cut
                outage["down"] = time.monotonic() - started
                time.sleep(8)
                server = start_mlflow(root, port)
                outage["up"] = time.monotonic() - started
                return
            time.sleep(0.2)

    started = time.monotonic()
    chaos = threading.Thread(target=outage_after_the_first_round, daemon=True)
    chaos.start()
    try:
        code = main(["sweep", "sweep.yaml"])
        chaos.join()
        print(f"\nMLflow server down from {outage.get('down', 0):.1f} s to {outage.get('up', 0):.1f} s into a "
              f"{time.monotonic() - started:.1f} s sweep; exit {code}")
        assert code == 0 and "up" in outage
        plan = make_plan(load_config(tmp_path / "sweep.yaml"))
        assert len(runs_of(client)) == 1 + 1 + len(plan.lineages)
        for run in runs_of(client, "lineage"):
            assert run.info.status == "FINISHED"
            assert rounds_of(client, run.info.run_id) == [1, 2, 3, 4, 5]
            masks = {f.path for f in client.list_artifacts(run.info.run_id, "masks")}
            assert masks == {f"masks/round_{r:02d}.safetensors" for r in range(1, 6)}
        print(f"{assert_nothing_duplicated(client)} metric histories checked: every round once")
    finally:
        stop_mlflow(server)


# --- 3. (child process) ------------------------------------------------------------------------------

def node_loss(workdir: Path) -> dict:
    """A head with no CPUs and two 1-CPU workers on this machine. First sweep: a worker removed
    (killed) once rounds are logged; its trial restarts on the other. Second sweep (one lineage
    marked failed, so the rerun loads the finished trunk from MLflow): the node holding the loaded
    trunk is removed before any trial fetched it, so the trials need it rebuilt from storage."""
    import ray
    from ray.cluster_utils import Cluster

    import lth_sweep.orchestrator.sweep as sweep_module
    from lth_sweep.orchestrator.progress import Console

    os.chdir(workdir)
    pruning = [{"rate": 0.5, "rounds": 4, "rewind": "init"}, {"rate": 0.5, "rounds": 4, "rewind": 3}]
    (workdir / "sweep.yaml").write_text(sweep_yaml("node-loss", pruning, slow=True))
    plan = make_plan(load_config(workdir / "sweep.yaml"))
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    console = Console()  # stderr, which the test keeps
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    report: dict = {}
    try:
        removed: dict = {}

        def remove_a_worker_once_rounds_are_logged():
            while True:
                runs = runs_of(client, "lineage")
                logged = sum(len(rounds_of(client, r.info.run_id)) for r in runs)
                if logged:
                    cluster.remove_node(workers[0], allow_graceful=False)
                    removed["rounds"] = logged
                    return
                time.sleep(0.1)

        threading.Thread(target=remove_a_worker_once_rounds_are_logged, daemon=True).start()
        rows = sweep_module.run_sweep(plan, address=cluster.address, console=console).rows
        report["trained"] = {"removed_after_rounds": removed.get("rounds", 0), "status": {r["name"]: r["status"] for r in rows}}

        workers = [workers[1], cluster.add_node(num_cpus=1)]
        cluster.wait_for_nodes()
        rerun = plan.lineages[0]
        (run,) = [r for r in runs_of(client, "lineage") if r.data.tags["lth.id"] == rerun.id]
        client.set_terminated(run.info.run_id, "FAILED")
        provide = sweep_module.provide_trunks

        def provide_then_lose_the_node_holding_it(*args, **kwargs):
            provided, failed = provide(*args, **kwargs)
            ((ref, _),) = provided.values()
            # Where it lives is known once the task loading it has stored it (asked earlier, the
            # answer can be empty and the node would not be removed): wait without fetching it here.
            ray.wait([ref], fetch_local=False)
            holders = ray.experimental.get_object_locations([ref])[ref]["node_ids"]
            names = {cluster.head_node.node_id: "head", **{w.node_id: "worker" for w in workers}}
            report["stored"] = {"trunk_on": [names.get(n, n) for n in holders]}
            victims = [w for w in workers if w.node_id in holders]
            if holders and len(victims) == len(holders):
                for node in victims:
                    cluster.remove_node(node, allow_graceful=False)
                report["stored"]["trunk_only_on"] = "removed worker"
            return provided, failed

        sweep_module.provide_trunks = provide_then_lose_the_node_holding_it
        rows = sweep_module.run_sweep(plan, address=cluster.address, console=console).rows
        report["stored"]["status"] = {r["name"]: r["status"] for r in rows}
    finally:
        ray.shutdown()
        cluster.shutdown()
    return report


def actor_loss(workdir: Path) -> dict:
    """A head with no CPUs and four 1-CPU workers; the analysis actor asks for a CPU, so it lives on
    a worker of its own, and one worker is spare once the trunk is trained. When a round's analysis
    is in MLflow, the actor's node is removed (killed): the actor restarts on the spare node, the
    calls it had queued are retried, and the trunk reference it computed (256 Grad-CAM maps: in its
    node's object store, not inlined) is rebuilt by rerunning the call that made it. (Without a
    free CPU anywhere the actor could not restart, and the trials would wait for it: README.)"""
    import ray
    from ray._private.state import actors as actor_table
    from ray.cluster_utils import Cluster

    import lth_sweep.orchestrator.sweep as sweep_module
    from lth_sweep.orchestrator.progress import Console

    os.chdir(workdir)
    pruning = [{"rate": 0.5, "rounds": 4, "rewind": "init"}, {"rate": 0.5, "rounds": 4, "rewind": 3}]
    analysis = {**TINY_ANALYSIS, "gradcam": {"images": 256, "grid_images": 0}, "cpus_per_actor": 1}
    (workdir / "sweep.yaml").write_text(sweep_yaml("actor-loss", pruning, analysis=analysis, slow=True))
    plan = make_plan(load_config(workdir / "sweep.yaml"))
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(4)]
    cluster.wait_for_nodes()
    report: dict = {}

    def analysis_actor() -> dict:
        (actor,) = [a for a in actor_table().values() if a["ActorClassName"] == "AnalysisActor"]
        return actor

    def lose_the_actor_s_node_once_a_round_is_analysed():
        while True:
            analysed = sum(len(rounds_of(client, r.info.run_id, "analysis/seconds")) for r in runs_of(client, "lineage"))
            if analysed:
                node_id = analysis_actor()["Address"]["NodeID"]
                victims = [w for w in workers if w.node_id == node_id]
                report.update(removed_after_analyses=analysed, actor_node_before=node_id, actor_node_removed=bool(victims))
                for node in victims:
                    cluster.remove_node(node, allow_graceful=False)
                return
            time.sleep(0.1)

    threading.Thread(target=lose_the_actor_s_node_once_a_round_is_analysed, daemon=True).start()
    try:
        original_shutdown = sweep_module.AnalysisPool.shutdown

        def shutdown_after_noting_the_actor(pool):  # the actor table, before the pool's actors are killed
            actor = analysis_actor()
            report.update(actor_restarts=actor["NumRestarts"], actor_node_after=actor["Address"]["NodeID"])
            original_shutdown(pool)

        sweep_module.AnalysisPool.shutdown = shutdown_after_noting_the_actor
        rows = sweep_module.run_sweep(plan, address=cluster.address, console=Console()).rows
        report["status"] = {r["name"]: r["status"] for r in rows}
    finally:
        ray.shutdown()
        cluster.shutdown()
    return report


if __name__ == "__main__":
    mode, folder = sys.argv[1:3]
    print(json.dumps({"node-loss": node_loss, "actor-loss": actor_loss}[mode](Path(folder))), flush=True)
