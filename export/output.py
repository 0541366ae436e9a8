"""Writing an export whole or not at all: everything goes into a temporary folder beside the
destination, which then takes the destination's name in one rename. An existing destination is
refused unless `force`, and then replaced only once the new export is complete.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from lth_sweep.export.errors import ExportError


def check_destination(destination: Path, force: bool) -> None:
    """ExportError, before any work, if `destination` exists (without `force`) or its folder does not."""
    if (destination.exists() or destination.is_symlink()) and not force:
        raise ExportError(f"{destination} exists; pass --force to replace it")
    if not destination.parent.is_dir():
        raise ExportError(f"cannot write {destination}: folder {destination.parent} does not exist")
    if not os.access(destination.parent, os.W_OK):
        raise ExportError(f"cannot write {destination}: folder {destination.parent} is not writable")


@contextlib.contextmanager
def staged(destination: Path, force: bool, directory: bool) -> Iterator[Path]:
    """Yields where to write: a folder (`directory`) or a file path inside a temporary folder next
    to `destination`. On a clean exit it becomes `destination`; on an error nothing is left."""
    destination = Path(destination).absolute()
    check_destination(destination, force)
    workspace = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent))
    try:
        target = workspace / "export"
        if directory:
            target.mkdir()
        yield target
        if destination.exists() or destination.is_symlink():
            # Replaced only now, and by a rename of a complete export; the old one is moved aside first.
            aside = workspace / "replaced"
            os.replace(destination, aside)
        os.replace(target, destination)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
