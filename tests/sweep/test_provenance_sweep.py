"""Provenance end to end: every run of a real sweep says who and what made it (MLflow's system
tags, lth-sweep's commit, the versions); finished runs another lth-sweep version made are reused
and reported; `--rerun-stale` trains them again, in new runs, to the same results.

Two seeds, so two trunks and two lineages: the lineage of seed 0 is made "stale" (its trunk is
not), and the trunk of seed 1 (its lineage is not), which must take its lineage with it."""
from __future__ import annotations

import io
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator.cli import main
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import display_name, make_plan
from lth_sweep.orchestrator.progress import Console
from lth_sweep.orchestrator.sweep import run_sweep
from lth_sweep.orchestrator.trunk_sharing import trunk_name
from tests.support.sweeps import assert_nothing_duplicated, rounds_of, runs_of, sweep_yaml
from lth_sweep.trainables import provenance, record

pytestmark = pytest.mark.slow

OLD = "0.0.9"  # the version the stale lineage claims; the stale trunk has none (made before versions were recorded)


def results(client: MlflowClient, run) -> dict[tuple[str, int], float]:
    """Every (metric, step) a run logged, wall-clock times aside."""
    return {
        (key, metric.step): metric.value
        for key in run.data.metrics if not key.startswith("time/")
        for metric in client.get_metric_history(run.info.run_id, key)
    }


def by_id(client: MlflowClient, kind: str) -> dict[str, object]:
    return {run.data.tags[record.ID]: run for run in runs_of(client, kind)}


def test_runs_say_what_made_them_and_stale_ones_are_reported_then_retrained(ray_session, tmp_path, monkeypatch, capsys):
    (tmp_path / "sweep.yaml").write_text(sweep_yaml("provenance", [{"rate": 0.5, "rounds": 2, "rewind": "init"}], seeds=(0, 1)))
    monkeypatch.chdir(tmp_path)
    plan = make_plan(load_config(tmp_path / "sweep.yaml"))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    current = provenance.versions()
    expected = provenance.creation_tags()

    assert main(["sweep", "sweep.yaml"]) == 0
    capsys.readouterr()
    assert len(runs_of(client)) == 1 + 2 + 2
    for run in runs_of(client):
        tags = run.data.tags
        for key in (record.USER, record.SOURCE_NAME, record.SOURCE_TYPE, *provenance.VERSION_TAGS):
            assert tags.get(key) == expected[key], (tags[record.KIND], key)
        assert tags.get(record.GIT_COMMIT) == expected.get(record.GIT_COMMIT)
    if expected.get(record.GIT_COMMIT):  # this checkout is a git repository
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=provenance.PACKAGE_ROOT, capture_output=True, text=True)
        assert expected[record.GIT_COMMIT] == head.stdout.strip()

    lineage0, lineage1 = sorted(plan.lineages, key=lambda spec: spec.trunk.seed)
    first_lineages, first_trunks = by_id(client, record.LINEAGE_KIND), by_id(client, record.TRUNK_KIND)
    stale_lineage, stale_trunk = first_lineages[lineage0.id], first_trunks[lineage1.trunk.id]
    client.set_tag(stale_lineage.info.run_id, record.VERSION_LTH_SWEEP, OLD)
    client.delete_tag(stale_trunk.info.run_id, record.VERSION_LTH_SWEEP)

    # Rerun: both reused (no new run, nothing trained), and reported on the console, in the outcome and the notes.
    said = io.StringIO()
    outcome = run_sweep(make_plan(load_config(tmp_path / "sweep.yaml")), console=Console(said))
    assert outcome.succeeded
    assert {(s.kind, s.lth_id, s.run_id, s.made_by) for s in outcome.stale} == {
        (record.LINEAGE_KIND, lineage0.id, stale_lineage.info.run_id, OLD),
        (record.TRUNK_KIND, lineage1.trunk.id, stale_trunk.info.run_id, None),
    }
    lines = said.getvalue()
    assert (f"{display_name(lineage0)}: reused from run {stale_lineage.info.run_id}, made by lth-sweep {OLD}, "
            f"not {current[record.VERSION_LTH_SWEEP]}; --rerun-stale trains it again") in lines
    assert f"{trunk_name(lineage1.trunk)}: reused from run {stale_trunk.info.run_id}, made by lth-sweep unknown" in lines
    assert "deleted" not in lines
    assert {run.info.run_id for run in runs_of(client)} == {run.info.run_id for run in [*first_lineages.values(), *first_trunks.values()]} | {
        runs_of(client, record.SWEEP_KIND)[0].info.run_id
    }
    reused = f"reused by lth-sweep {current[record.VERSION_LTH_SWEEP]}; made by lth-sweep"
    assert f"{reused} {OLD}" in client.get_run(stale_lineage.info.run_id).data.tags[record.NOTES]
    assert f"{reused} unknown" in client.get_run(stale_trunk.info.run_id).data.tags[record.NOTES]
    fresh = {first_lineages[lineage1.id].info.run_id, first_trunks[lineage0.trunk.id].info.run_id}
    assert all(record.NOTES not in client.get_run(run_id).data.tags for run_id in fresh)
    assert main(["sweep", "sweep.yaml", "--format", "json"]) == 0  # the CLI says it once more at the end
    err = capsys.readouterr().err
    assert "reused 2 finished run(s) made by another lth-sweep version: " in err
    assert f"{display_name(lineage0)}: run {stale_lineage.info.run_id}, made by lth-sweep {OLD}" in err
    assert "Run the same command with --rerun-stale to train them again" in err

    # --rerun-stale: the stale lineage, the stale trunk and that trunk's lineage in new runs; the old ones deleted.
    assert main(["sweep", "sweep.yaml", "--rerun-stale"]) == 0
    err = capsys.readouterr().err
    retrained = {stale_lineage.info.run_id, stale_trunk.info.run_id, first_lineages[lineage1.id].info.run_id}
    for old in retrained:
        assert client.get_run(old).info.lifecycle_stage == "deleted"
        assert f"run {old} deleted (restorable in MLflow's UI), trained again" in err
    assert f"{display_name(lineage1)}: its trunk is trained again" in err
    assert "made by another lth-sweep version" not in err and "--rerun-stale trains it again" not in err
    assert_nothing_duplicated(client)
    lineages, trunks = by_id(client, record.LINEAGE_KIND), by_id(client, record.TRUNK_KIND)
    assert trunks[lineage0.trunk.id].info.run_id == first_trunks[lineage0.trunk.id].info.run_id  # not stale: kept
    for lth_id, new, old in [
        (lineage0.id, lineages[lineage0.id], stale_lineage),
        (lineage1.trunk.id, trunks[lineage1.trunk.id], stale_trunk),
        (lineage1.id, lineages[lineage1.id], first_lineages[lineage1.id]),
    ]:
        assert new.info.run_id not in retrained and new.info.status == "FINISHED", lth_id
        assert new.data.tags[record.VERSION_LTH_SWEEP] == current[record.VERSION_LTH_SWEEP]
        assert record.NOTES not in new.data.tags  # from round 1, not from the old run's checkpoints
        assert results(client, new) == results(client, client.get_run(old.info.run_id)), lth_id
    for spec in plan.lineages:
        assert rounds_of(client, lineages[spec.id].info.run_id) == [1, 2]

    # Nothing stale is left: a further --rerun-stale reads the finished sweep back and changes nothing.
    before = {run.info.run_id for run in runs_of(client)}
    said = io.StringIO()
    outcome = run_sweep(make_plan(load_config(tmp_path / "sweep.yaml", ["tracking.rerun_stale=true"])), console=Console(said))
    assert outcome.succeeded and outcome.stale == ()
    assert {run.info.run_id for run in runs_of(client)} == before
    assert "deleted" not in said.getvalue()
