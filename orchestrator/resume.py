"""Where an interrupted lineage picks up after its driver died.

Within one `lth sweep`, Tune restarts a failed trial from its last checkpoint by itself. A new
driver (`lth sweep CONFIG --resume`, or the same command again) starts a new Tuner, which knows
nothing of the old trials; their checkpoints are still in the storage path, one folder per
lineage (`<storage>/<sweep name>-<sweep id>/<lineage id>/checkpoint_NNNNNN/`). This finds each
lineage's checkpoint of the latest round there, so the trial can continue from it.

The latest *round* is read from each checkpoint's `state.json`, not from the folder's number:
a resumed trial numbers its checkpoints from 0 again, next to the old ones. Integrity is checked
by the trial when it loads (checksums); a corrupt one makes it start from round 1, as before.
"""
from __future__ import annotations

import json

import pyarrow.fs as pafs


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


def latest_checkpoints(storage: str, experiment: str, lineage_ids: list[str]) -> dict[str, tuple[str, int]]:
    """Lineage id -> (the checkpoint folder of its latest round, as a path or URI, that round)."""
    filesystem, root = _filesystem(storage)
    found: dict[str, tuple[str, int]] = {}
    for lineage_id in lineage_ids:
        folder = f"{root.rstrip('/')}/{experiment}/{lineage_id}"
        selector = pafs.FileSelector(folder, allow_not_found=True)
        for info in filesystem.get_file_info(selector):
            if info.type != pafs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
                continue
            try:
                with filesystem.open_input_stream(f"{info.path}/state.json") as stream:
                    round_index = int(json.loads(stream.read())["round"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # half-written when the driver died: an older one will do
            if round_index > found.get(lineage_id, ("", 0))[1]:
                found[lineage_id] = (_as_uri(storage, info.path), round_index)
    return found
