"""Connecting to Ray: a local instance sized to the machine by default, or an existing cluster."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING

import ray

if TYPE_CHECKING:
    from lth_sweep.analysis.analysis_spec import AnalysisSpec

# Tune's own CSV/JSON/TensorBoard result files duplicate what MLflow records.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


class RayUnreachable(RuntimeError):
    """The Ray cluster named by --address could not be joined."""


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray waits minutes on an address nobody answers; a plain TCP probe fails in seconds."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as error:
        raise RayUnreachable(f"--address {address}: no Ray head answers there ({error})") from None


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Returns True if this call started Ray (and so should shut it down). In a process where Ray
    is already initialized (a library caller's, a test session's), that Ray is used; an `address`
    naming another cluster is an error, not silently ignored."""
    if ray.is_initialized():
        if address and address != "auto":
            _check_reachable(address)
            current = ray.get_runtime_context().gcs_address
            if address.split("://")[-1] != current:
                raise RayUnreachable(f"--address {address}: this process is already connected to the Ray cluster at {current}")
        return False
    common = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise RayUnreachable(f"--address {address}: cannot join a Ray cluster there ({error})") from None
    else:
        # "local": a new instance even where `ray start` or a test cluster left its address in
        # /tmp/ray/ray_current_cluster, which a bare ray.init() would silently join.
        with owned_by_the_driver():
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), **common)
    one_line_errors()
    return True


class _OneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = record.getMessage().splitlines()[0] if record.getMessage() else "", ()
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def one_line_errors() -> None:
    """Ray's log lines in the driver, one line each: Tune logs a failed trial attempt, or a state
    file it could not save, with the whole traceback, which the trial's MLflow run (`lth.error`)
    and its `error.txt` in the storage folder keep; the progress lines say what happened."""
    for handler in logging.getLogger("ray").handlers:
        if not any(isinstance(existing, _OneLine) for existing in handler.filters):
            handler.addFilter(_OneLine())


@contextlib.contextmanager
def owned_by_the_driver():
    """The Ray processes started meanwhile (and the workers they start) keep SIGTERM and SIGHUP
    blocked, as Ray itself blocks SIGINT in them: a scheduler's SIGTERM to the whole job, or a
    closed terminal's SIGHUP to its process group, reaches the driver alone, which stops the trials
    at their checkpoints and then shuts Ray down (`orchestrator/interrupt.py`). Unblocked, they
    die at once and the driver waits a minute for its lost GCS before aborting. The price: each
    of Ray's processes ignores `ray.shutdown`'s SIGTERM and is killed after its one-second grace."""
    blocked = {signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class ClusterTooSmall(RuntimeError):
    """One trial asks for more than the whole cluster has: Tune would wait for it forever."""


def check_fits(cpus_per_trial: float, gpus_per_trial: float, analysis: AnalysisSpec | None = None) -> None:
    """Stops before anything runs if no node set could ever hold one trial, or one actor of the
    `analysis` spec (when given and enabled). (An autoscaling cluster must start with one node of
    each kind a trial or actor needs.)"""
    have = ray.cluster_resources()
    for name, wanted, field in (("CPU", cpus_per_trial, "cpus_per_trial"), ("GPU", gpus_per_trial, "gpus_per_trial")):
        if wanted > have.get(name, 0) + 1e-9:
            raise ClusterTooSmall(
                f"resources.{field}: {wanted:g} {name}s per trial, but the Ray cluster has {have.get(name, 0):g}; "
                "trials would wait forever"
            )
    if analysis is not None and analysis.enabled:
        from lth_sweep.analysis.actors import pool_shortfall

        problem = pool_shortfall(analysis, have)
        if problem:
            raise ClusterTooSmall(problem)
