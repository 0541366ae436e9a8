"""One driver per sweep per store: a lease on the sweep's parent run.

A retried cluster job, or two terminals, can start the same sweep twice on one store; both would
train every lineage and log every round twice. So a driver takes the sweep's lease before it
writes anything else, and another driver that finds it held exits 2 naming the holder, or with
`--wait` waits for it to end. A driver that died without releasing it (SIGKILL, a lost node)
stops beating: its lease is taken over once its heartbeat is a minute old (`lapse_s`).

The lease is taken with MLflow's one compare-and-set: a param, once logged, cannot be logged again
with another value. Taking generation n logs the param `lth.lease.<n>` (the driver's `host:pid`,
a token, the time); of two drivers racing for the same n, one gets MLflow's "changing param values
is not allowed". The params stay on the parent run, a record of the drivers that ran the sweep.
The holder's heartbeat is the tag `lth.lease.heartbeat` ("<n> <unix seconds>", or "<n> released").
Before each beat the holder reads the generation back: one that finds a newer holder (it stalled
past the lapse, and was taken over) stops its sweep rather than log beside it.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from mlflow.exceptions import MlflowException

PARAM_PREFIX = "lth.lease."  #: + generation: the driver that took the lease then
HEARTBEAT = "lth.lease.heartbeat"  #: "<generation> <unix seconds>" or "<generation> released"

#: How long after its last heartbeat a lease lapses: six missed heartbeats, longer than a busy
#: store stalls one and short for a retried job. $LTH_LEASE_LAPSE_S sets another (at least 6 s).
DEFAULT_LAPSE_S = 60.0
WAIT_POLL_S = 5.0


def lapse_s() -> float:
    try:
        return max(6.0, float(os.environ.get("LTH_LEASE_LAPSE_S", DEFAULT_LAPSE_S)))
    except ValueError:
        return DEFAULT_LAPSE_S


def heartbeat_s() -> float:
    return lapse_s() / 6


class SweepBusy(RuntimeError):
    """Another live driver runs this sweep on this store."""


@dataclass(frozen=True)
class Holder:
    generation: int
    driver: str  # host:pid
    token: str
    since: float
    last_seen: float  # its last heartbeat, or when it took the lease
    released: bool
    pid_namespace: str = ""

    def alive(self, now: float) -> bool:
        return not self.released and now - self.last_seen < lapse_s() and not self._gone_from_this_machine()

    def _gone_from_this_machine(self) -> bool:
        """A driver of this host and PID namespace whose process is gone died (killed): no need to
        wait for its lease to lapse. (A reused PID only makes this wait for the lapse.)"""
        host, _, pid = self.driver.rpartition(":")
        if host != socket.gethostname() or self.pid_namespace != pid_namespace() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, another user's
            return False
        return False

    def describe(self, now: float) -> str:
        started = datetime.fromtimestamp(self.since, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"driver {self.driver} (since {started}, last heartbeat {max(0.0, now - self.last_seen):.0f} s ago)"


def holder_of(params: dict[str, str], tags: dict[str, str]) -> Holder | None:
    """The latest driver to take the lease, from the parent run's params and tags (None: never taken)."""
    generations = [int(key[len(PARAM_PREFIX):]) for key in params if key.startswith(PARAM_PREFIX) and key[len(PARAM_PREFIX):].isdigit()]
    if not generations:
        return None
    generation = max(generations)
    driver, token, since, namespace = _parse(params[f"{PARAM_PREFIX}{generation}"])
    beat_generation, _, beat = tags.get(HEARTBEAT, "").partition(" ")
    released, last_seen = False, since
    if beat_generation == str(generation):
        released = beat == "released"
        if not released:
            try:
                last_seen = float(beat)
            except ValueError:
                pass
    return Holder(generation, driver, token, since, last_seen, released, namespace)


def _parse(value: str) -> tuple[str, str, float, str]:
    """`host:pid token since=<unix seconds> pidns=<id>`, as `Lease.try_take` logs it."""
    driver, token, *fields = value.split(" ")
    named = dict(field.partition("=")[::2] for field in fields)
    try:
        since = float(named.get("since", 0))
    except ValueError:
        since = 0.0
    return driver, token, since, named.get("pidns", "")


def pid_namespace() -> str:
    """This process's PID namespace (containers sharing a host name have their own)."""
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        return ""


def busy_message(sweep: str, holder: Holder, now: float) -> str:
    return (
        f"sweep {sweep} is being run by {holder.describe(now)} on this store: wait for it (--wait), or stop that "
        f"driver. A driver that died leaves a lease that lapses {lapse_s():.0f} s after its last heartbeat"
    )


class Lease:
    """`lease.take(wait, say)` before the sweep writes; `lease.release()` when it ends."""

    def __init__(self, client, run_id: str, sweep: str):
        self.client, self.run_id, self.sweep = client, run_id, sweep
        self.driver = f"{socket.gethostname()}:{os.getpid()}"
        self.token = uuid.uuid4().hex[:12]
        self.generation: int | None = None
        self.lost_to: Holder | None = None  # who took it over, when a heartbeat found it taken
        self.on_lost: Callable[[Holder], None] = lambda holder: None
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None

    def current(self) -> Holder | None:
        run = self.client.get_run(self.run_id)
        return holder_of(run.data.params, run.data.tags)

    def try_take(self) -> Holder | None:
        """Takes the lease unless a live driver holds it; returns that driver, or None once taken."""
        while True:
            held = self.current()
            now = time.time()
            if held is not None and held.alive(now):
                return held
            generation = (held.generation if held else 0) + 1
            try:
                self.client.log_param(self.run_id, f"{PARAM_PREFIX}{generation}", f"{self.driver} {self.token} since={now!r} pidns={pid_namespace()}")
            except MlflowException as error:
                if "Changing param values is not allowed" not in str(error):
                    raise
                continue  # another driver took this generation first: read who
            self.generation = generation
            self._write_heartbeat(repr(now))
            return None

    def take(self, wait: bool, say: Callable[[str], None]) -> None:
        """Takes the lease, or raises SweepBusy; with `wait`, polls until the holder ends."""
        _until_free(self.try_take, self.sweep, wait, say)
        self._beating = threading.Thread(target=self._beat, name="lth-lease-heartbeat", daemon=True)
        self._beating.start()

    def _beat(self) -> None:
        while not self._stop.wait(heartbeat_s()):
            try:
                held = self.current()
                if held is not None and held.generation != self.generation:
                    self.lost_to = held
                    self.on_lost(held)
                    return
                self._write_heartbeat(repr(time.time()))
            except Exception:  # noqa: BLE001 - a store down for a while: the next beat tries again
                continue

    def release(self) -> None:
        """Stops the heartbeat and frees the lease, unless another driver took it over."""
        self._stop.set()
        if self._beating is not None:
            self._beating.join()
        if self.generation is None or self.lost_to is not None:
            return
        held = self.current()
        if held is not None and held.generation == self.generation:
            self._write_heartbeat("released")

    def _write_heartbeat(self, value: str) -> None:
        self.client.set_tag(self.run_id, HEARTBEAT, f"{self.generation} {value}")


def wait_while_held(find_parent: Callable[[], object | None], sweep: str, wait: bool, say: Callable[[str], None]) -> None:
    """Before Ray starts, reading only: raises SweepBusy at once while another live driver holds
    the sweep's lease, or with `wait` returns once it ended (`Lease.take` then settles a race)."""
    def live_holder() -> Holder | None:
        parent = find_parent()
        holder = holder_of(parent.data.params, parent.data.tags) if parent is not None else None
        return holder if holder is not None and holder.alive(time.time()) else None

    _until_free(live_holder, sweep, wait, say)


def _until_free(holder_now: Callable[[], Holder | None], sweep: str, wait: bool, say: Callable[[str], None]) -> None:
    """Polls `holder_now` (a live holder, or None once the lease is free or taken) until None:
    without `wait` the first holder raises SweepBusy; with it, the wait is said once."""
    told = False
    while (holder := holder_now()) is not None:
        if not wait:
            raise SweepBusy(busy_message(sweep, holder, time.time()))
        if not told:
            say(f"waiting for {holder.describe(time.time())}, which runs sweep {sweep} on this store")
            told = True
        time.sleep(min(WAIT_POLL_S, heartbeat_s()))
