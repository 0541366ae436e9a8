"""The sweep's lease (orchestrator/lease.py) on a real MLflow store: one holder at a time, also
when drivers race for it; released or lapsed leases are taken over; a holder that was taken over
finds out at its next heartbeat."""
from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator import lease as lease_module
from lth_sweep.orchestrator.lease import HEARTBEAT, PARAM_PREFIX, Lease, SweepBusy, holder_of, wait_while_held


@pytest.fixture
def parent(mlflow_store):
    client = MlflowClient(mlflow_store)
    experiment = client.create_experiment("leases")
    return mlflow_store, client.create_run(experiment).info.run_id


def test_one_holder_at_a_time_and_release_frees_it(parent):
    uri, run_id = parent
    first, second = Lease(MlflowClient(uri), run_id, "s"), Lease(MlflowClient(uri), run_id, "s")
    assert first.try_take() is None
    holder = second.try_take()
    assert holder is not None and holder.token == first.token and holder.generation == 1
    with pytest.raises(SweepBusy, match=r"sweep s is being run by driver .+:\d+ \(since .* UTC, last heartbeat 0 s ago\)"):
        second.take(wait=False, say=print)
    first.release()
    assert second.try_take() is None and second.generation == 2
    params = MlflowClient(uri).get_run(run_id).data.params
    assert {key for key in params if key.startswith(PARAM_PREFIX)} == {f"{PARAM_PREFIX}1", f"{PARAM_PREFIX}2"}  # a record of the drivers


def test_a_dead_driver_s_lease_lapses(parent, monkeypatch):
    """A driver that stopped beating (killed) is taken over once its heartbeat is the lapse old."""
    uri, run_id = parent
    client = MlflowClient(uri)
    long_ago = time.time() - lease_module.lapse_s() - 1
    client.log_param(run_id, f"{PARAM_PREFIX}1", f"gone:123 token since={long_ago!r}")
    client.set_tag(run_id, HEARTBEAT, f"1 {long_ago!r}")
    taker = Lease(client, run_id, "s")
    assert taker.try_take() is None and taker.generation == 2
    client.set_tag(run_id, HEARTBEAT, f"2 {time.time()!r}")  # just beaten: alive
    assert Lease(client, run_id, "s").try_take().driver == taker.driver


def _race(uri: str, run_id: str, start: float, won) -> None:
    while time.time() < start:
        pass
    won.put(Lease(MlflowClient(uri), run_id, "s").try_take() is None)


def test_drivers_racing_for_a_free_lease_get_one_holder(parent):
    """Four processes try to take the lease within the same millisecond, three times over."""
    uri, run_id = parent
    context = multiprocessing.get_context("spawn")
    for attempt in range(3):
        won = context.Queue()
        start = time.time() + 3
        racers = [context.Process(target=_race, args=(uri, run_id, start, won)) for _ in range(4)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(60)
        results = [won.get(timeout=10) for _ in racers]
        assert sum(results) == 1, (attempt, results)
        client = MlflowClient(uri)
        held = holder_of(client.get_run(run_id).data.params, client.get_run(run_id).data.tags)
        client.set_tag(run_id, HEARTBEAT, f"{held.generation} released")  # free for the next attempt


def test_a_holder_taken_over_finds_out_at_its_next_heartbeat(parent, monkeypatch):
    uri, run_id = parent
    monkeypatch.setenv("LTH_LEASE_LAPSE_S", "6")  # a heartbeat each second
    stalled = Lease(MlflowClient(uri), run_id, "s")
    lost = []
    stalled.on_lost = lost.append
    stalled.take(wait=False, say=print)
    client = MlflowClient(uri)
    client.log_param(run_id, f"{PARAM_PREFIX}2", f"other:9 token since={time.time()!r}")  # as a driver that saw it lapse
    deadline = time.time() + 10
    while not lost and time.time() < deadline:
        time.sleep(0.1)
    assert lost and lost[0].driver == "other:9" and stalled.lost_to == lost[0]
    stalled.release()  # leaves the other's lease alone
    assert holder_of(client.get_run(run_id).data.params, client.get_run(run_id).data.tags).generation == 2
    assert not client.get_run(run_id).data.tags[HEARTBEAT].endswith("released")


def test_waiting_ends_when_the_holder_releases(parent, monkeypatch):
    uri, run_id = parent
    monkeypatch.setenv("LTH_LEASE_LAPSE_S", "6")
    holder = Lease(MlflowClient(uri), run_id, "s")
    holder.take(wait=False, say=print)
    said = []
    with pytest.raises(SweepBusy):
        wait_while_held(lambda: MlflowClient(uri).get_run(run_id), "s", wait=False, say=said.append)
    threading.Timer(2.0, holder.release).start()
    started = time.time()
    wait_while_held(lambda: MlflowClient(uri).get_run(run_id), "s", wait=True, say=said.append)
    assert 1.5 < time.time() - started < 10
    assert said and said[0].startswith(f"waiting for driver {holder.driver}")


def test_a_driver_of_this_machine_whose_process_is_gone_is_taken_over_at_once(parent):
    """Killed a second ago (its heartbeat fresh), but its PID is gone here: no wait for the lapse;
    the same PID in another PID namespace (another container on this host name) still holds."""
    import socket
    import subprocess

    uri, run_id = parent
    client = MlflowClient(uri)
    ended = subprocess.Popen(["true"])
    ended.wait()
    now = time.time()
    driver = f"{socket.gethostname()}:{ended.pid}"
    client.log_param(run_id, f"{PARAM_PREFIX}1", f"{driver} token since={now!r} pidns=other")
    client.set_tag(run_id, HEARTBEAT, f"1 {now!r}")
    assert Lease(client, run_id, "s").try_take().driver == driver  # another namespace: it may be alive there
    client.log_param(run_id, f"{PARAM_PREFIX}2", f"{driver} token since={now!r} pidns={lease_module.pid_namespace()}")
    client.set_tag(run_id, HEARTBEAT, f"2 {now!r}")
    taker = Lease(client, run_id, "s")
    assert taker.try_take() is None and taker.generation == 3
