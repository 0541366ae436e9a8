"""What the user sees while a sweep runs: one line per finished round, with the elapsed time."""
from __future__ import annotations

import logging
import sys
import time

from ray import tune

from lth_sweep.trainables.trial_payload import TrialConfig


class Console:
    def __init__(self, stream=None):
        self.started = time.monotonic()
        self.stream = stream  # None = whatever sys.stderr is when printing (Tune pickles callbacks)

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    def say(self, message: str) -> None:
        print(f"[{self.elapsed()}] {message}", file=self.stream or sys.stderr, flush=True)


class LogConsole(Console):
    """The library's default: the same lines through `logging` (logger "lth_sweep.orchestrator.progress"),
    so a notebook or a service sees them only if it asks."""

    def say(self, message: str) -> None:
        logging.getLogger(__name__).info("[%s] %s", self.elapsed(), message)


class RoundPrinter(tune.Callback):
    def __init__(self, console: Console, total_rounds: int, done_rounds: int = 0):
        self.console = console
        self.total_rounds = total_rounds
        self.done_rounds = done_rounds

    def _name(self, trial) -> str:
        return TrialConfig.of(trial.config).name

    def on_trial_start(self, iteration, trials, trial, **info):
        self.console.say(f"{self._name(trial)}: started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "failed" in result:
            self.console.say(f"{self._name(trial)}: FAILED: {result['failed']}")
            return
        self.done_rounds += 1
        rounds = TrialConfig.of(trial.config).rounds
        self.console.say(
            f"{self._name(trial)}: round {result['round']}/{rounds}  sparsity {result['sparsity']:.1%}  "
            f"test/acc {result['test/acc']:.4f}  [{self.done_rounds}/{self.total_rounds} rounds]"
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        if "failed" not in (trial.last_result or {}):
            self.console.say(f"{self._name(trial)}: finished")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.console.say(f"{self._name(trial)}: attempt failed, restarting from its last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.console.say(f"{self._name(trial)}: FAILED (see its MLflow run's lth.error tag)")
