"""Running `lth` as a user does, for the bad-input tests: where Ray may not start.

`run_lth(args, cwd)` runs the CLI's `main` in this process (a subprocess would spend ~6 s per case
importing torch), in `cwd`, with `env` set on top of the environment (MLFLOW_TRACKING_URI removed
unless `env` gives it), and with Ray's start replaced by a function that exits 99 printing
"RAY STARTED", so a command that reaches Ray before judging its input fails the test. An exception
escaping `main` is caught and shown as the traceback a user would see. Returns the exit code,
stdout, stderr and the files the command left in `cwd` (relative paths, sorted).
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import ray

from lth_sweep.orchestrator import sweep as sweep_module
from lth_sweep.orchestrator.cli import main


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    left: list[str]  # files in the working directory afterwards (relative paths)

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr + self.stdout


def files_in(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def _refuse_ray(*args, **kwargs):
    print("RAY STARTED", file=sys.stderr)
    raise SystemExit(99)


@contextlib.contextmanager
def _environment(env: dict | None):
    saved = dict(os.environ)
    if env is None or "MLFLOW_TRACKING_URI" not in env:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.update(env or {})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_lth(args: list[str], cwd: Path, env: dict | None = None, timeout: float | None = None) -> Outcome:
    """`timeout` is accepted for the callers' sake; a case's time is asserted by the caller."""
    out, err = io.StringIO(), io.StringIO()
    here = Path.cwd()
    patches = [mock.patch.object(ray, "init", _refuse_ray), mock.patch.object(sweep_module, "start_ray", _refuse_ray)]
    with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        os.chdir(cwd)
        try:
            for patch in patches:
                patch.start()
            code = main(args)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # what a user would see: Python's traceback, exit 1
            err.write(traceback.format_exc())
            code = 1
        finally:
            for patch in patches:
                patch.stop()
            os.chdir(here)
    return Outcome(code, out.getvalue(), err.getvalue(), files_in(cwd))
