"""Ctrl-C, SIGTERM and SIGHUP during a sweep: stop cleanly, say so, leave MLflow saying what is done.

Schedulers stop jobs with SIGTERM (Kubernetes, SLURM, `ray job stop`), a closed terminal sends
SIGHUP: each is handled as Ctrl-C is. While lineages run as Tune trials, the first signal asks Tune
to stop them (a Tune stopper), so each keeps its last checkpoint; before that (trunks training), it
interrupts at once. A second signal interrupts at once too. Tune's own SIGINT handler is switched
off while this is active: it would stop the trials too, but leave no trace that the sweep was
interrupted. `ray.init` installs its own SIGTERM handler (`sys.exit`), so the handlers are
installed again once Ray is up (`Interruption.install`).
"""
from __future__ import annotations

import os
import signal
import threading

from ray import tune

#: what a note calls each signal handled
HANDLED = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


class SweepInterrupted(Exception):
    """A signal interrupted the sweep; what finished is in MLflow, the rest continues on a rerun."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's code for a command ended by the signal: 130 (Ctrl-C), 143, 129."""
        return 128 + self.signum


#: Set by the handler. Process-wide, as a signal handler is: Tune pickles its stoppers with its
#: state, so the stopper reads this rather than holding an Event (which does not pickle).
_INTERRUPTED = threading.Event()


class _StopAll(tune.Stopper):
    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return _INTERRUPTED.is_set()


class Interruption:
    """`with Interruption() as interruption:` ... `interruption.happened`, `interruption.cause`."""

    def __init__(self):
        self.event = _INTERRUPTED
        self.tune_running = False
        self.signum: int | None = None
        self._cause: str | None = None
        self._previous: dict[int, object] = {}
        self._tune_handler_setting = None

    @property
    def happened(self) -> bool:
        return self.event.is_set()

    @property
    def cause(self) -> str:
        """What interrupted the sweep: the signal's name, or what `stop` was told."""
        return self._cause or HANDLED.get(self.signum or signal.SIGINT, "Ctrl-C")

    def stop(self, cause: str) -> None:
        """Stops the trials as a signal would, from any thread."""
        self._cause = cause
        self.event.set()

    def stopper(self) -> tune.Stopper:
        return _StopAll()

    def _on_signal(self, signum, frame) -> None:
        if self.event.is_set() or not self.tune_running:  # a second signal, or nothing to stop gently
            self.signum = self.signum or signum
            self.event.set()
            raise KeyboardInterrupt
        self.signum = signum
        self.event.set()

    def install(self) -> None:
        """(Re)installs the handlers: at entry, and after `ray.init` replaced the SIGTERM one."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in HANDLED:
            previous = signal.signal(signum, self._on_signal)
            self._previous.setdefault(signum, previous)

    def __enter__(self) -> Interruption:
        self.event.clear()
        self.signum, self._cause = None, None
        if threading.current_thread() is threading.main_thread():
            self.install()
            self._tune_handler_setting = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if self._previous:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
            self._previous.clear()
            if self._tune_handler_setting is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._tune_handler_setting
        if kind is KeyboardInterrupt:
            self.signum = self.signum or signal.SIGINT
            self.event.set()
            return True  # the caller reads `happened`
        return False
