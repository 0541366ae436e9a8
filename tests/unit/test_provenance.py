"""What made a run: MLflow's system tags and the versions, collected by trainables.provenance and
set on every run the driver creates; a run continued by another version says so in its notes;
`tracking.rerun_stale` is not part of the sweep's identity. Real git in temporary repositories,
real MLflow on SQLite."""
from __future__ import annotations

import getpass
import importlib.metadata
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.mlflow_runs import SweepTracker
from lth_sweep.orchestrator.plan import make_plan
from tests.support.tiny import tiny_lineage, tiny_trunk
from lth_sweep.trainables import provenance, record

ROOT = Path(__file__).resolve().parents[2]
GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True, text=True, check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A git repository holding a committed pyproject.toml, as a source checkout of lth-sweep does."""
    repo = tmp_path / "checkout"
    repo.mkdir()
    (repo / "pyproject.toml").write_text("[project]\nname = 'lth-sweep'\n")
    git(repo, "init", "-q")
    git(repo, "add", "pyproject.toml")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def test_creation_tags_hold_mlflow_system_tags_and_the_installed_versions():
    tags = provenance.creation_tags()
    assert tags[record.USER] == getpass.getuser()
    assert tags[record.SOURCE_NAME] == sys.argv[0]  # MLflow's own resolution: the program that runs
    assert tags[record.SOURCE_TYPE] == "LOCAL"
    assert tags[record.VERSION_LTH_SWEEP] == importlib.metadata.version("lth-sweep")
    assert tags[record.VERSION_TORCH] == importlib.metadata.version("torch")
    assert tags[record.VERSION_RAY] == importlib.metadata.version("ray")
    assert tags[record.VERSION_MLFLOW] == importlib.metadata.version("mlflow")
    assert tags[record.VERSION_PYTHON] == platform.python_version()
    assert all(isinstance(value, str) and value for value in tags.values())


@needs_git
def test_the_commit_is_lth_sweeps_own_where_it_runs_from_a_checkout():
    tags = provenance.creation_tags()
    inside = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--error-unmatch", "pyproject.toml"], capture_output=True)
    if inside.returncode != 0:  # this copy of the project is not a git checkout
        assert record.GIT_COMMIT not in tags
        return
    assert tags[record.GIT_COMMIT] == git(ROOT, "rev-parse", "HEAD")
    assert tags[record.SOURCE_DIRTY] in ("true", "false")


@needs_git
def test_a_checkout_gives_its_commit_and_whether_tracked_files_changed(checkout):
    head = git(checkout, "rev-parse", "HEAD")
    assert provenance.source_commit(checkout) == provenance.SourceCommit(head, dirty=False)
    (checkout / "notes.txt").write_text("untracked: not part of what runs")
    assert provenance.source_commit(checkout) == provenance.SourceCommit(head, dirty=False)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'lth-sweep'\nversion = '9'\n")
    assert provenance.source_commit(checkout) == provenance.SourceCommit(head, dirty=True)
    tags = provenance.system_tags(checkout)
    assert tags[record.GIT_COMMIT] == head and tags[record.SOURCE_DIRTY] == "true"


@needs_git
def test_an_installed_copy_inside_some_repository_has_no_commit(checkout):
    site = checkout / ".venv" / "lib" / "site-packages"  # untracked, as a virtual environment is
    site.mkdir(parents=True)
    (site / "pyproject.toml").write_text("")
    assert provenance.source_commit(site) is None
    assert record.GIT_COMMIT not in provenance.system_tags(site)


def test_no_repository_no_commit_tag(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    assert provenance.source_commit(tmp_path) is None
    tags = provenance.system_tags(tmp_path)
    assert record.GIT_COMMIT not in tags and record.SOURCE_DIRTY not in tags
    assert tags[record.SOURCE_TYPE] == "LOCAL"  # the rest is there all the same


def test_no_git_binary_no_commit_tag_and_no_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH on which there is no git
    assert provenance.source_commit(ROOT) is None
    tags = provenance.creation_tags()
    assert record.GIT_COMMIT not in tags
    assert tags[record.VERSION_LTH_SWEEP] == importlib.metadata.version("lth-sweep")


def test_versions_read_back_from_a_runs_tags():
    now = provenance.versions()
    old = {**now, record.VERSION_LTH_SWEEP: "0.0.9", record.VERSION_TORCH: "2.3.0"}
    assert provenance.made_by(old) == "0.0.9"
    assert provenance.is_stale(old, now[record.VERSION_LTH_SWEEP])
    assert not provenance.is_stale(now, now[record.VERSION_LTH_SWEEP])
    assert provenance.version_changes(old, now) == [
        f"lth-sweep 0.0.9 -> {now[record.VERSION_LTH_SWEEP]}", f"torch 2.3.0 -> {now[record.VERSION_TORCH]}"
    ]
    assert provenance.version_changes(now, now) == []
    before_versions = {record.KIND: "lineage"}  # a run from before versions were recorded
    assert provenance.made_by(before_versions) is None
    assert provenance.is_stale(before_versions, now[record.VERSION_LTH_SWEEP])
    changes = provenance.version_changes(before_versions, now)
    assert len(changes) == len(provenance.VERSION_TAGS)
    assert changes[0] == f"lth-sweep unknown -> {now[record.VERSION_LTH_SWEEP]}"
    assert changes[-1] == f"python unknown -> {platform.python_version()}"


def test_every_run_the_tracker_creates_carries_them(mlflow_store):
    tracker = SweepTracker(mlflow_store, "provenance", "prov", "sweep0")
    trunk = tracker.child(record.TRUNK_KIND, tiny_trunk(), "trunk")
    lineage = tracker.child(record.LINEAGE_KIND, tiny_lineage(), "imp s0")
    expected = provenance.creation_tags()
    client = MlflowClient(mlflow_store)
    for run_id in (tracker.parent_id, trunk.info.run_id, lineage.info.run_id):
        tags = client.get_run(run_id).data.tags
        assert {key: tags.get(key) for key in expected} == expected
        assert tags[record.SWEEP] == "prov"  # the tracker's own tags are kept


def test_a_run_continued_by_other_versions_keeps_its_creation_tags_and_notes_them(mlflow_store):
    client = MlflowClient(mlflow_store)
    tracker = SweepTracker(mlflow_store, "provenance", "prov", "sweep0")
    run_id = tracker.child(record.LINEAGE_KIND, tiny_lineage(), "imp s0").info.run_id
    tracker.reopen(run_id)  # continued by the versions that made it: nothing to say
    assert record.NOTES not in client.get_run(run_id).data.tags
    client.set_tag(run_id, record.VERSION_LTH_SWEEP, "0.0.9")  # as an older driver would have made it
    client.delete_tag(run_id, record.VERSION_PYTHON)
    client.set_terminated(run_id, "KILLED")

    later = SweepTracker(mlflow_store, "provenance", "prov", "sweep0")  # a later driver
    assert later.child(record.LINEAGE_KIND, tiny_lineage(), "imp s0").info.run_id == run_id
    later.reopen(run_id)
    later.reopen(run_id)  # twice: said once
    tags = client.get_run(run_id).data.tags
    current = provenance.versions()
    assert tags[record.VERSION_LTH_SWEEP] == "0.0.9" and record.VERSION_PYTHON not in tags
    assert tags[record.NOTES] == (
        f"continued by an attempt with lth-sweep 0.0.9 -> {current[record.VERSION_LTH_SWEEP]}, "
        f"python unknown -> {current[record.VERSION_PYTHON]}"
    )


def test_a_discarded_run_is_deleted_and_made_anew(mlflow_store):
    client = MlflowClient(mlflow_store)
    tracker = SweepTracker(mlflow_store, "provenance", "prov", "sweep0")
    old = tracker.child(record.LINEAGE_KIND, tiny_lineage(), "imp s0")
    tracker.discard(tracker.existing(record.LINEAGE_KIND, tiny_lineage().id))
    assert tracker.existing(record.LINEAGE_KIND, tiny_lineage().id) is None
    new = tracker.child(record.LINEAGE_KIND, tiny_lineage(), "imp s0")
    assert new.info.run_id != old.info.run_id
    assert client.get_run(old.info.run_id).info.lifecycle_stage == "deleted"
    again = SweepTracker(mlflow_store, "provenance", "prov", "sweep0")  # a later driver finds the new one
    assert again.existing(record.LINEAGE_KIND, tiny_lineage().id).info.run_id == new.info.run_id


def test_rerun_stale_is_not_part_of_the_sweeps_identity(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\ndata: {image_size: 16, train_size: 256, test_size: 128}\nmodel: {name: conv2, width: 4}\n"
        "train: {epochs: 1}\npruning: {rate: 0.5, rounds: 2}\n"
    )
    plain = make_plan(load_config(path), check_paths=False)
    rerun = make_plan(load_config(path, ["tracking.rerun_stale=true"]), check_paths=False)
    assert rerun.config.tracking.rerun_stale and not plain.config.tracking.rerun_stale
    assert rerun.sweep_id == plain.sweep_id
    assert [spec.id for spec in rerun.lineages] == [spec.id for spec in plain.lineages]
    assert list(rerun.trunks) == list(plain.trunks)
