"""Writing an export whole or not at all: everything goes into a temporary folder beside the
destination, which then takes the destination's name in one rename. An existing destination is
refused unless `force`, and then replaced only once the new export is complete. Every file and
folder written gets the permissions a new one gets here (0666 / 0777 less the umask), whatever
the library that wrote it chose (safetensors writes 0600).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from lth_sweep.export.errors import ExportError


#: a name that says "one file", and the format that writes such a file (None: none does)
FILE_SUFFIXES = {".safetensors": None, ".pt": "torchscript", ".pth": "torchscript", ".onnx": "onnx"}


def check_folder_name(destination: Path) -> None:
    """ExportError if the folder of a safetensors export is named like one file (`r3.safetensors`).
    Refused rather than written: a folder of that name is what tools and scripts then open as a
    file, and fail on; written under another name, it is not where the caller will look."""
    suffix = destination.suffix.lower()
    if suffix in FILE_SUFFIXES:
        other = FILE_SUFFIXES[suffix]
        raise ExportError(
            f"{destination.name}: a safetensors export is a folder (weights.safetensors, model.py, load_ticket.py), "
            f"not one {suffix} file; name the folder without the suffix ({destination.with_suffix('').name})"
            + (f", or export with format {other} for one {suffix} file" if other else "")
        )


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
        _normal_permissions(target)
        if destination.exists() or destination.is_symlink():
            # Replaced only now, and by a rename of a complete export; the old one is moved aside first.
            aside = workspace / "replaced"
            os.replace(destination, aside)
        os.replace(target, destination)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _umask() -> int:
    """The process's umask, read from Linux's /proc where it says it: os.umask can only read it by
    setting it, for a moment, for every thread."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _normal_permissions(target: Path) -> None:
    mask = _umask()
    for path in [target, *target.rglob("*")] if target.is_dir() else [target]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
