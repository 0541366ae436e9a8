"""Ctrl-C during a sweep: stop cleanly, say so, and leave MLflow saying what is done.

While lineages run as Tune trials, the first Ctrl-C asks Tune to stop them (a Tune stopper), so
each keeps its last checkpoint; before that (trunks training), it interrupts at once. A second
Ctrl-C is Python's own KeyboardInterrupt. Tune's own SIGINT handler is switched off while this is
active: it would stop the trials too, but leave no trace that the sweep was interrupted.
"""
from __future__ import annotations

import os
import signal
import threading

from ray import tune


class SweepInterrupted(Exception):
    """The user interrupted the sweep; what finished is in MLflow, the rest continues on a rerun."""


#: Set by the SIGINT handler. Process-wide, as a signal handler is: Tune pickles its stoppers with
#: its state, so the stopper reads this rather than holding an Event (which does not pickle).
_INTERRUPTED = threading.Event()


class _StopAll(tune.Stopper):
    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return _INTERRUPTED.is_set()


class Interruption:
    """`with Interruption() as interruption:` ... `interruption.happened`."""

    def __init__(self):
        self.event = _INTERRUPTED
        self.tune_running = False
        self._previous = None
        self._tune_handler_setting = None

    @property
    def happened(self) -> bool:
        return self.event.is_set()

    def stopper(self) -> tune.Stopper:
        return _StopAll()

    def _on_sigint(self, signum, frame) -> None:
        self.event.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: at once
        if not self.tune_running:
            raise KeyboardInterrupt

    def __enter__(self) -> Interruption:
        self.event.clear()
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._tune_handler_setting = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            if self._tune_handler_setting is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._tune_handler_setting
        if kind is KeyboardInterrupt:
            self.event.set()
            return True  # the caller reads `happened`
        return False
