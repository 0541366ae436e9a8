"""When the storage path fills up under a sweep, or Ray Tune itself fails (its own files
unwritable), the driver still ends the sweep: the runs left RUNNING end FAILED with the cause, the
parent too, and the summary of what finished is printed (exit 1), instead of Tune's traceback.
Whether Tune raises on a full disk depends on which file it was writing when space ran out; the
cause is named either way (`full_disk_cause`)."""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

from lth_sweep.trainables import record


def full_disk_cause(storage: str) -> str | None:
    """The cause to record when the storage path's device is full at the sweep's end, else None."""
    return FULL.format(storage=storage) if _no_space(storage) else None


FULL = "no space left on the device of the storage path {storage}: free some, then run the same command to continue"


def cause_of(error: BaseException, storage: str) -> str:
    """One line: a full disk named as such (Tune's own error is about a pickle it could not read)."""
    if _full_disk(error) or _no_space(storage):
        return FULL.format(storage=storage)
    return f"Ray Tune failed: {type(error).__name__}: {error}".splitlines()[0][: record.TAG_CHARS]


def _full_disk(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC or "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _no_space(storage: str) -> bool:
    if "://" in storage:
        return False
    folder = Path(storage)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def fail_unfinished(tracker, cause: str) -> None:
    """Every child run of the sweep still RUNNING ends FAILED, its error the cause; the parent gets
    the cause too (`finish` ends it FAILED)."""
    for run in tracker.still_running():
        tracker.fail(run.info.run_id, cause)
    tracker.set_tags(tracker.parent_id, {record.ERROR: cause})
