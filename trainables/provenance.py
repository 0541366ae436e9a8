"""What made a run: who started it, from where, with which code and which versions. The sweep's
runs are created with `MlflowClient.create_run`, which sets none of the system tags that
`mlflow.start_run` would; they are collected here, once per driver, and set on every run it creates.

- `mlflow.user`, `mlflow.source.name`, `mlflow.source.type`: MLflow's own context resolution.
- `mlflow.source.git.commit`: lth-sweep's own commit, read with `git` in the package's folder when
  that folder is a git checkout holding lth-sweep (an editable install), with `lth.source.dirty`
  saying whether tracked files differ from it. MLflow's git context is left out: it looks at
  `sys.argv[0]`, the `lth` script in a virtual environment, and would name whatever repository
  the environment happens to sit in. No git, no checkout, an installed copy: no commit tag.
- `lth.version.*`: lth-sweep, torch, Ray, MLflow and Python.

A finished run made by another lth-sweep version is *stale*: reused, but reported, until the sweep
runs with `--rerun-stale`. A run from before versions were recorded has no version tag and counts
as stale ("an unknown version").
"""
from __future__ import annotations

import importlib.metadata
import logging
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking.context.git_context import GitRunContext
from mlflow.tracking.context.registry import resolve_tags

from lth_sweep.trainables import record

log = logging.getLogger(__name__)

#: The folder lth-sweep's packages are in: the checkout, for an editable install.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
#: version tag -> the distribution whose version it holds
DISTRIBUTIONS = {
    record.VERSION_LTH_SWEEP: "lth-sweep",
    record.VERSION_TORCH: "torch",
    record.VERSION_RAY: "ray",
    record.VERSION_MLFLOW: "mlflow",
}
VERSION_TAGS = (*DISTRIBUTIONS, record.VERSION_PYTHON)
UNKNOWN = "unknown"
GIT_SECONDS = 10.0


def versions() -> dict[str, str]:
    """Version tag -> the version installed in this process ("unknown" if not installed)."""
    found = {tag: _installed(distribution) for tag, distribution in DISTRIBUTIONS.items()}
    return found | {record.VERSION_PYTHON: platform.python_version()}


def _installed(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


@dataclass(frozen=True)
class SourceCommit:
    commit: str
    dirty: bool  # tracked files under the package's folder differ from the commit


def source_commit(root: Path = PACKAGE_ROOT) -> SourceCommit | None:
    """The commit of the git checkout lth-sweep runs from; None where `root` holds no checkout of
    it (an installed copy, even one inside some repository's virtual environment) or git is
    missing or refuses (e.g. a folder owned by another user)."""
    commit = _git(root, "rev-parse", "--verify", "HEAD")
    if commit is None or _git(root, "ls-files", "--error-unmatch", "--", "pyproject.toml") is None:
        return None
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".")
    return SourceCommit(commit, bool(status))


def _git(root: Path, *args: str) -> str | None:
    """git's output in `root`, None when it fails or is not there."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=GIT_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError) as error:
        log.debug("git %s in %s: %s", " ".join(args), root, error)
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def system_tags(root: Path = PACKAGE_ROOT) -> dict[str, str]:
    """MLflow's system tags for a run this process creates (see the module's docstring)."""
    tags = {key: str(value) for key, value in resolve_tags(ignore=[GitRunContext]).items()}
    source = source_commit(root)
    if source is not None:
        tags[record.GIT_COMMIT] = source.commit
        tags[record.SOURCE_DIRTY] = str(source.dirty).lower()
    return tags


def creation_tags(root: Path = PACKAGE_ROOT) -> dict[str, str]:
    """Everything a new run carries about what made it: the system tags and the versions."""
    return system_tags(root) | versions()


def made_by(tags: Mapping[str, str]) -> str | None:
    """The lth-sweep version that made a run (from its tags); None for a run from before versions
    were recorded."""
    return tags.get(record.VERSION_LTH_SWEEP)


def is_stale(tags: Mapping[str, str], current: str) -> bool:
    """A run made by an lth-sweep version other than `current`, or by an unknown one."""
    return made_by(tags) != current


def version_changes(before: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """`name old -> new` for each version in `now` that differs from the one in `before` (a run's
    tags; "unknown" where it has none)."""
    names = {**DISTRIBUTIONS, record.VERSION_PYTHON: "python"}
    return [
        f"{names[tag]} {before.get(tag, UNKNOWN)} -> {now[tag]}"
        for tag in VERSION_TAGS
        if tag in now and before.get(tag) != now[tag]
    ]


@dataclass(frozen=True)
class StaleRun:
    """A finished trunk or lineage reused from a run that another lth-sweep version made."""

    kind: str  # record.TRUNK_KIND | record.LINEAGE_KIND
    name: str  # as the sweep shows it ("imp s0", "trunk conv2 shapes s0")
    lth_id: str
    run_id: str
    made_by: str | None  # the lth-sweep version that made it; None: unknown (made before versions were recorded)

    def describe(self) -> str:
        return f"{self.name}: run {self.run_id}, made by lth-sweep {self.made_by or UNKNOWN}"
