"""`lth store copy|move SRC DST`: a SQLite MLflow store and its local artifacts, as one unit.

MLflow records every artifact location as an absolute path, so a copied `mlflow.db` still points at
the original's artifact folders: a sweep run on the copy would write into the original's, and with
the original moved the copy cannot export. Copying here takes the database (SQLite's backup API:
a consistent snapshot) and the artifacts of every run and logged model it holds into
`mlruns/<experiment id>/` beside the new database, and rewrites every path that pointed into the
old folders. Artifacts that are not local files (`s3://`, a server's `mlflow-artifacts:`) are
shared by both copies, and the report says so.

Nothing is half-written: the copy is staged in a hidden folder beside DST and put in place at the
end, database last. A store a live driver is writing is refused (its lease, `orchestrator/lease.py`).
`move` copies, then deletes from the source only the folders of the runs and models it copied
(MLflow puts experiment 0 of every store made in one working folder in the same `mlruns/0`).
"""
from __future__ import annotations

import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from lth_sweep.orchestrator.lease import holder_of

#: the tables that hold artifact folders, and their location column
ARTIFACT_ROWS = (("runs", "artifact_uri"), ("logged_models", "artifact_location"))


class StoreCopyError(RuntimeError):
    """The store cannot be copied or moved as asked; the message names why."""


@dataclass
class StoreCopy:
    source: Path
    destination: Path
    runs: int = 0
    bytes: int = 0
    shared: list[str] = field(default_factory=list)  # artifact locations that are not local files
    copied: list[Path] = field(default_factory=list)  # the source's run and model folders copied

    def describe(self, moved: bool = False) -> str:
        what = "moved" if moved else "copied"
        said = (f"{what} {self.source} to {self.destination}: {self.runs} runs, {len(self.copied)} artifact folders "
                f"({self.bytes / 1e6:.1f} MB) now in {self.destination.parent / 'mlruns'}")
        if self.shared:
            said += f"; {len(self.shared)} artifact locations are not local files and stay shared: {', '.join(self.shared[:3])}"
        return said


def local_path(location: str | None) -> Path | None:
    """The folder an artifact location names, where it is a local file path."""
    if not location:
        return None
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and location.startswith("/"):
        return Path(location)
    return None


def copy_store(source: Path, destination: Path) -> StoreCopy:
    source, destination = source.resolve(), destination.absolute()
    _check(source, destination)
    staging = destination.parent / f".{destination.name}.copying-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        report = StoreCopy(source, destination)
        database = staging / destination.name
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as reading, sqlite3.connect(database) as writing:
            reading.backup(writing)
        with sqlite3.connect(database) as connection:
            moves = _relocate(connection, destination.parent / "mlruns", report)
            for old, new in moves:
                staged = staging / "mlruns" / new.relative_to(destination.parent / "mlruns")
                if old.is_dir():
                    shutil.copytree(old, staged, symlinks=True)
                    report.copied.append(old)
                    report.bytes += sum(f.stat().st_size for f in staged.rglob("*") if f.is_file())
        _put_in_place(staging, destination)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def move_store(source: Path, destination: Path) -> StoreCopy:
    """Copies, then deletes the source database and the run and model folders it copied."""
    report = copy_store(source, destination)
    for folder in report.copied:
        owner = folder.parent if folder.name == "artifacts" else folder  # <run id>/artifacts: the run's folder
        shutil.rmtree(owner, ignore_errors=True)
    report.source.unlink()
    return report


def _check(source: Path, destination: Path) -> None:
    from lth_sweep.orchestrator.preflight import sqlite_problem

    if not source.is_file():
        raise StoreCopyError(f"{source}: no such database")
    problem = sqlite_problem(source, reading=True)
    if problem:
        raise StoreCopyError(f"{source}: {problem}")
    if destination.exists():
        raise StoreCopyError(f"{destination} exists; copy to a new file")
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as connection:
        for sweep, holder in _live_leases(connection):
            raise StoreCopyError(f"sweep {sweep} is being run by {holder}: copy the store when it ends")
        taken = [row[0] for row in connection.execute("SELECT experiment_id FROM experiments")
                 if (destination.parent / "mlruns" / str(row[0])).exists()]
    if taken:
        raise StoreCopyError(f"{destination.parent / 'mlruns'} already holds experiment folders {taken}; copy to another folder")


def _live_leases(connection) -> list[tuple[str, str]]:
    """(sweep, holder) of each sweep a live driver holds (lth.lease params on parent runs)."""
    now, live = time.time(), []
    rows = connection.execute(
        "SELECT p.run_uuid, p.key, p.value FROM params p JOIN runs r ON r.run_uuid = p.run_uuid "
        "WHERE p.key LIKE 'lth.lease.%' AND r.lifecycle_stage = 'active'"
    ).fetchall()
    for run_id in {row[0] for row in rows}:
        params = {key: value for owner, key, value in rows if owner == run_id}
        tags = dict(connection.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)).fetchall())
        holder = holder_of(params, tags)
        if holder is not None and holder.alive(now):
            live.append((tags.get("lth.sweep", run_id), holder.describe(now)))
    return live


def _artifact_rows(connection) -> list[tuple[str, Path]]:
    """(location as stored, local folder) of every run and logged model with local artifacts."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    found = []
    for table, column in ARTIFACT_ROWS:
        if table in tables:
            for (location,) in connection.execute(f"SELECT {column} FROM {table}"):
                folder = local_path(location)
                if folder is not None:
                    found.append((location, folder))
    return found


def _relocate(connection, mlruns: Path, report: StoreCopy) -> list[tuple[Path, Path]]:
    """Rewrites, in every text column, each experiment's local artifact location to
    `mlruns/<experiment id>`; returns the (old, new) folders of the runs and models to copy."""
    report.runs = connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    renames: dict[str, str] = {}
    for experiment_id, location in connection.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall():
        old = local_path(location)
        if old is None:
            report.shared.append(location)
            continue
        new = mlruns / str(experiment_id)
        renames[str(old)] = str(new)
        if location.startswith("file:"):
            renames[location] = new.as_uri()
    moves = []
    for location, folder in _artifact_rows(connection):
        for old, new in renames.items():
            if str(folder).startswith(old + "/"):
                moves.append((folder, Path(new + str(folder)[len(old):])))
                break
        else:
            raise StoreCopyError(f"artifact folder {location} lies outside its experiment's location; not copied")
    for old, new in sorted(renames.items(), key=lambda item: -len(item[0])):  # the longest prefix first
        _replace_prefix(connection, old, new)
    connection.commit()
    return moves


def _replace_prefix(connection, old: str, new: str) -> None:
    for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        for column in [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")') if "CHAR" in row[2].upper() or "TEXT" in row[2].upper()]:
            connection.execute(
                f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                f'WHERE substr("{column}", 1, ?) = ? AND (length("{column}") = ? OR substr("{column}", ?, 1) = \'/\')',
                (new, len(old) + 1, len(old), old, len(old), len(old) + 1),
            )


def _put_in_place(staging: Path, destination: Path) -> None:
    """The artifact folders first, the database last: a database in place has its artifacts."""
    staged_runs = staging / "mlruns"
    if staged_runs.is_dir():
        (destination.parent / "mlruns").mkdir(exist_ok=True)
        for folder in staged_runs.iterdir():
            folder.rename(destination.parent / "mlruns" / folder.name)
    (staging / destination.name).rename(destination)
