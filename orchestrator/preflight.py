"""Judging a sweep's stores before anything starts: the storage path (Ray Tune's checkpoints) and
the MLflow tracking store, in seconds, writing nothing.

`lth sweep` calls `check_sweep_stores` before Ray starts; `lth query` and `lth tickets` call
`check_reading_store`, which also requires the store to exist already (reading never creates one).
A problem raises `BadStore`, whose message names the setting (`storage`, `tracking.uri`,
`$MLFLOW_TRACKING_URI`, `--tracking-uri`) and says why. The tracking store itself is judged by
`orchestrator.tracking_store.check_tracking`, with the helpers below for SQLite files and folders.

Judging writes nothing: a folder is tested by creating a uniquely named probe in it and removing it
at once, and a SQLite file is only read (read-only connection, after its header is checked).
"""
from __future__ import annotations

import importlib.metadata
import os
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import quote

#: Storage schemes whose filesystem needs the network or credentials: left to it, not contacted here.
REMOTE_FILESYSTEMS = {"s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss"}
SQLITE_HEADER = b"SQLite format 3\x00"
#: MLflow's tables that lth-sweep reads and writes (analysis/query_sql.py, orchestrator/mlflow_runs.py).
MLFLOW_TABLES = {"experiments", "experiment_tags", "runs", "tags", "params", "metrics", "latest_metrics", "alembic_version"}


class BadStore(Exception):
    """A storage path or tracking store that cannot be used; the message names the setting and why."""


# --- helpers (also used by check_tracking) ------------------------------------------------------


def cannot_create_in(folder: Path, kind: str = "file") -> str | None:
    """Why nothing can be created in `folder` (None if something can): a uniquely named probe
    (`kind`: "file" or "folder") is created there and removed at once, so nothing is left behind.
    A real probe, not `os.access`: as root, access() says yes where the filesystem says no (/proc)."""
    try:
        if kind == "folder":
            os.rmdir(tempfile.mkdtemp(prefix=".lth-probe-", dir=folder))
        else:
            handle, name = tempfile.mkstemp(prefix=".lth-probe-", dir=folder)
            os.close(handle)
            os.unlink(name)
    except OSError as error:
        return f"cannot create {kind}s in {folder} ({error.strerror or error})"
    return None


def _existing_ancestor(path: Path) -> Path:
    """`path` itself if it exists, else its deepest existing parent."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def sqlite_problem(file: Path, reading: bool) -> str | None:
    """Why the SQLite file `file` is not a usable MLflow database (None if it is), read only.

    An empty file or an empty SQLite database is fine for a sweep (MLflow creates its tables in
    it) and an error for `reading` (there is nothing to read, and MLflow would write its tables).
    """
    try:
        size = file.stat().st_size
        with open(file, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        return f"cannot read {file} ({error.strerror or error})"
    if size == 0:
        return f"{file} is an empty file, not an MLflow database" if reading else None
    if head != SQLITE_HEADER:
        return f"{file} is not an MLflow database (not a SQLite file at all)"
    try:
        connection = sqlite3.connect(f"file:{quote(str(file))}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = None
            if "alembic_version" in tables:
                version = next(iter(connection.execute("SELECT version_num FROM alembic_version")), (None,))[0]
        finally:
            connection.close()
    except sqlite3.Error as error:
        if "locked" in str(error):  # SQLITE_BUSY, after the connection's 5 s wait
            holders = _processes_with_open(file)[:5]
            opened = f"; the file is open in process{'es' if len(holders) > 1 else ''} {', '.join(holders)}" if holders else ""
            return (
                f"{file} is locked, held by another writer (a write transaction is open on it{opened}); "
                "try again once it has finished"
            )
        return f"{file} is not an MLflow database (SQLite: {error})"
    if not tables:
        return f"{file} is an empty SQLite database, not an MLflow one" if reading else None
    missing = MLFLOW_TABLES - tables
    if missing:
        some = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
        return f"{file} is not an MLflow database (a SQLite database without MLflow's tables {sorted(missing)}; it has: {some})"
    return _schema_problem(file, version)


def _processes_with_open(file: Path) -> list[str]:
    """`pid (command)` of each process that has `file` open, where /proc tells (Linux; else none)."""
    target = os.path.realpath(file)
    found = []
    for descriptors in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(descriptor) == target for descriptor in descriptors.iterdir()):
                found.append(f"{descriptors.parent.name} ({(descriptors.parent / 'comm').read_text().strip()})")
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return found


def _schema_problem(file: Path, version: str | None) -> str | None:
    """MLflow refuses a database of another schema version ("Detected out-of-date database schema")
    or, when tables are missing, migrates it in place: say so before it does either."""
    from lth_sweep.analysis.query_sql import mlflow_schema_revisions

    head, revisions = mlflow_schema_revisions()
    if head is None or version == head:  # scripts unreadable (MLflow changed): MLflow judges
        return None
    mlflow_version = importlib.metadata.version("mlflow")
    if version not in revisions:
        return (
            f"{file} is an MLflow database of schema {version!r}, which this MLflow ({mlflow_version}) does not know: "
            "it was written by a newer MLflow; upgrade MLflow"
        )
    return (
        f"{file} is an MLflow database of an older schema ({version}; MLflow {mlflow_version} expects {head}): "
        f"take a backup, then run `mlflow db upgrade sqlite:///{file}`"
    )


# --- the checks ---------------------------------------------------------------------------------


def tracking_source(explicit: str | None, setting: str) -> str:
    """Where the tracking URI came from, as the user would change it."""
    if explicit:
        return setting
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return "$MLFLOW_TRACKING_URI"
    return f"the default store; set {setting} or $MLFLOW_TRACKING_URI for another"


def storage_problem(storage: str, local: str) -> str | None:
    """Why Ray Tune could not write checkpoints at `storage` (None if it could, or if that is for a
    remote filesystem to say). `local`: the path it resolves to (the config's `storage_path`)."""
    if "://" in storage:
        scheme = storage.split("://", 1)[0].lower()
        if scheme in REMOTE_FILESYSTEMS:
            return None  # its credentials and network are its own: Tune reports them
        import pyarrow.fs

        try:  # what Ray Tune does with a storage URI; fast and offline for every scheme but the remote ones
            filesystem, path = pyarrow.fs.FileSystem.from_uri(storage)
        except (ValueError, OSError, TypeError) as error:
            known = ", ".join(f"{s}://" for s in sorted(REMOTE_FILESYSTEMS | {"file"}))
            return f"no filesystem for the scheme {scheme!r} ({error}); use a local folder or one of {known}"
        if not isinstance(filesystem, pyarrow.fs.LocalFileSystem):
            return None
        local = path
    target = Path(local)
    existing = _existing_ancestor(target)
    if not existing.is_dir():
        under = "" if existing == target else f", so {target} cannot be created under it"
        return f"{existing} is a file, not a folder{under}"
    return cannot_create_in(existing, "folder")


def check_sweep_stores(config, base: Path) -> None:
    """`lth sweep`: the config's storage path and tracking store, before Ray starts. Raises
    BadStore naming every setting that is wrong."""
    from lth_sweep.orchestrator.tracking_store import TrackingUnavailable, check_tracking

    problems = []
    problem = storage_problem(config.storage, config.storage_path(base))
    if problem:
        problems.append(
            f"storage {config.storage!r}: {problem}. Ray Tune keeps the sweep's checkpoints there: "
            "set storage to a folder it can write, or a URI (s3://...)"
        )
    uri = config.tracking.resolved_uri(base)
    try:
        check_tracking(uri, source=tracking_source(config.tracking.uri, "tracking.uri"))
    except TrackingUnavailable as error:
        problems.append(str(error))
    if problems:
        raise BadStore("\nlth: ".join(problems))


def check_reading_store(uri: str, source: str) -> None:
    """`lth query`, `lth tickets`: the store must exist and be MLflow's (reading never creates one)
    and answer within seconds."""
    from lth_sweep.orchestrator.tracking_store import TrackingUnavailable, check_tracking

    try:
        check_tracking(uri, source=source, reading=True)
    except TrackingUnavailable as error:
        raise BadStore(str(error)) from None
