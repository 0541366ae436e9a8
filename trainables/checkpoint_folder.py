"""Each lineage's round checkpoint in the storage path, kept by its trial: one folder per lineage
(`<storage>/<sweep name>-<sweep id>/<lineage id>/`, Tune's trial folder) holding the checkpoint of
its latest round, `checkpoint_<round>/` (`trainables.checkpoint`'s files).

The trial writes it, not Tune: Tune's own checkpoints with `num_to_keep` force a snapshot of the
whole experiment state at every trial's checkpoint, a cost that grows with the number of trials
and made the driver O(N^2) (bench/driver_scale.py). Written here, a checkpoint costs the driver
nothing, and the same lookup serves a trial Tune restarted and a lineage a new driver continues.

A checkpoint is complete once its `state.json` is there: on a local (or mounted) folder it is
written beside and renamed into place; on an object store (`s3://...`) `state.json` is uploaded
last. The older rounds' folders are deleted after the new one is complete. `state.json` names
the round (a folder's name is not trusted: older sweeps numbered Tune's checkpoints from 0 per
driver) and the checksums that loading checks.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow.fs as pafs

STATE = "state.json"
PREFIX = "checkpoint_"


def _filesystem(storage: str) -> tuple[pafs.FileSystem, str]:
    if "://" in storage:
        return pafs.FileSystem.from_uri(storage)
    return pafs.LocalFileSystem(), storage


def _as_uri(storage: str, path: str) -> str:
    """A path from the filesystem of `storage` as `storage` spells it, options (e.g.
    `?endpoint_override=...`) included, so that `tune.Checkpoint(uri)` finds the same place."""
    if "://" not in storage:
        return path
    scheme, rest = storage.split("://", 1)
    query = rest.split("?", 1)[1] if "?" in rest else ""
    return f"{scheme}://{path}" + (f"?{query}" if query else "")


def experiment_folder(storage: str, experiment: str) -> str:
    """The sweep's Tune experiment folder, spelled as `storage` is (a path or a URI)."""
    if "://" in storage:
        base, _, query = storage.partition("?")
        return f"{base.rstrip('/')}/{experiment}" + (f"?{query}" if query else "")
    return f"{storage.rstrip('/')}/{experiment}"


def _checkpoints(filesystem: pafs.FileSystem, folder: str) -> list[tuple[str, int | None]]:
    """(path, round or None when unreadable) of every checkpoint folder in a lineage's folder."""
    found = []
    for info in filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not info.base_name.startswith(PREFIX):
            continue
        try:
            with filesystem.open_input_stream(f"{info.path}/{STATE}") as stream:
                found.append((info.path, int(json.loads(stream.read())["round"])))
        except (OSError, ValueError, KeyError, TypeError):
            found.append((info.path, None))  # half-written when its writer died: an older one will do
    return found


def latest_checkpoints(experiment: str, lineage_ids: list[str]) -> dict[str, tuple[str, int]]:
    """Lineage id -> (the checkpoint folder of its latest round, as a path or URI, that round);
    `experiment`: `experiment_folder(...)`."""
    filesystem, root = _filesystem(experiment)
    found: dict[str, tuple[str, int]] = {}
    for lineage_id in lineage_ids:
        for path, round_index in _checkpoints(filesystem, f"{root.rstrip('/')}/{lineage_id}"):
            if round_index is not None and round_index > found.get(lineage_id, ("", 0))[1]:
                found[lineage_id] = (_as_uri(experiment, path), round_index)
    return found


def save_checkpoint(experiment: str, lineage_id: str, round_index: int, local: Path) -> None:
    """Puts the checkpoint written in the local folder `local` in place as the lineage's latest,
    then deletes its older ones."""
    filesystem, root = _filesystem(experiment)
    folder = f"{root.rstrip('/')}/{lineage_id}"
    target = f"{folder}/{PREFIX}{round_index:06d}"
    files = sorted((p for p in Path(local).iterdir() if p.is_file()), key=lambda p: p.name == STATE)  # state.json last
    local_store = isinstance(filesystem, pafs.LocalFileSystem)
    staging = f"{folder}/.{PREFIX}{round_index:06d}-{uuid.uuid4().hex[:8]}" if local_store else target
    filesystem.create_dir(staging, recursive=True)
    for path in files:
        pafs.copy_files(str(path), f"{staging}/{path.name}", source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=filesystem)
    if local_store:
        filesystem.delete_dir_contents(target, missing_dir_ok=True)
        if filesystem.get_file_info(target).type == pafs.FileType.Directory:
            filesystem.delete_dir(target)
        filesystem.move(staging, target)
    for path, _ in _checkpoints(filesystem, folder):
        if path.rstrip("/") != target:
            filesystem.delete_dir(path)
    for info in filesystem.get_file_info(pafs.FileSelector(folder)):  # staged by a writer that died
        if info.type == pafs.FileType.Directory and info.base_name.startswith(f".{PREFIX}"):
            filesystem.delete_dir(info.path)
