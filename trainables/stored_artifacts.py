"""Reading back what a run stored, checked: each tensor file against the sha256 recorded in the
tracking store when it was logged (`record.digest_tag`), so a file rotted, cut short or swapped in
the artifact store is refused by name, never used. Files logged before digests were recorded are
read unchecked."""
from __future__ import annotations

from pathlib import Path

from mlflow.exceptions import MlflowException

from lth_sweep.trainables import record
from lth_sweep.trainables.checkpoint import sha256


class ArtifactUnusable(RuntimeError):
    """A stored artifact is missing, or differs from what was logged; the message names it."""


def stored_location(run, artifact_path: str) -> str:
    return f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"


def download_checked(client, run, artifact_path: str, destination: str) -> Path:
    """Downloads `artifact_path` of `run` (an MLflow Run) into `destination`, checked."""
    where = stored_location(run, artifact_path)
    try:
        local = Path(client.download_artifacts(run.info.run_id, artifact_path, destination))
    except (MlflowException, OSError) as error:
        raise ArtifactUnusable(f"stored file {where} is missing ({type(error).__name__})") from None
    if not local.is_file():
        raise ArtifactUnusable(f"stored file {where} is missing")
    expected = run.data.tags.get(record.digest_tag(artifact_path))
    if expected is not None and sha256(local) != expected:
        raise ArtifactUnusable(
            f"stored file {where} is truncated or altered: its sha256 differs from the one recorded when it was logged "
            f"(tag {record.digest_tag(artifact_path)})"
        )
    return local


def was_logged(run, artifact_path: str) -> bool:
    """Whether the run recorded logging this artifact (its digest tag)."""
    return record.digest_tag(artifact_path) in run.data.tags
