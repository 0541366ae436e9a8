"""`lth store copy|move SRC DST`: a SQLite tracking store with its local artifacts, relocated
(`orchestrator/store_copy.py`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `store` on `lth`'s subcommands."""
    command = subparsers.add_parser(
        "store", help="copy or move a SQLite tracking store with its artifacts, as one independent record",
        description="Copy or move an MLflow SQLite store (mlflow.db) and the local artifacts of its runs into "
        "mlruns/ beside the new database, every recorded path rewritten: the copy is independent of the original.",
    )
    command.add_argument("action", choices=["copy", "move"])
    command.add_argument("source", help="the store: a path to mlflow.db, or its sqlite:/// URI")
    command.add_argument("destination", help="the new database file (or a folder: its mlflow.db)")
    command.set_defaults(run=_store)
    return command


def _path(store: str) -> Path:
    from lth_sweep.orchestrator.tracking_store import plain_sqlite_uri, sqlite_file

    if "://" in store:
        file = sqlite_file(plain_sqlite_uri(store))
        if file is None:
            raise ValueError(f"{store}: only a SQLite store (sqlite:///PATH) is copied here; a server's or database's "
                             "store is copied with its database's own tools")
        return file
    return Path(store)


def _store(args) -> int:
    from lth_sweep.orchestrator.store_copy import StoreCopyError, copy_store, move_store

    try:
        source = _path(args.source)
        destination = _path(args.destination)
        if destination.is_dir():
            destination = destination / "mlflow.db"
        report = (move_store if args.action == "move" else copy_store)(source, destination)
    except (StoreCopyError, ValueError) as error:
        print(f"lth store {args.action}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report.describe(moved=args.action == "move"))
    print(f"use it with: tracking.uri: sqlite:///{report.destination}")
    return 0
