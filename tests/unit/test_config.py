"""Config: grids, overrides, and bad input ending with exit 2, a named field and nothing written."""
from pathlib import Path

import pytest

from lth_sweep.orchestrator.cli import main
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.config_errors import ConfigError
from lth_sweep.orchestrator.grid import expand_lineages, unique_trunks
from lth_sweep.orchestrator.plan import make_plan

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def write(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return str(path)


def test_the_embedded_default_is_the_quickstart_file():
    default, explicit = load_config(None), load_config(QUICKSTART)
    assert default == explicit
    plan = make_plan(default)
    assert len(plan.trunks) == len(default.seeds) == 2
    assert len(plan.lineages) == 12 and plan.total_rounds == 48


def test_lists_expand_into_a_grid_and_trunks_are_shared(tmp_path):
    config = load_config(write(tmp_path, """
name: grid
seeds: [0, 1]
train: {epochs: [1, 2]}
pruning: [{rate: [0.2, 0.5], rounds: 2}, {rate: 0.2, rounds: 2, rewind: 3}]
"""))
    lineages = expand_lineages(config)
    assert len(lineages) == 2 * 2 * 3
    trunks = unique_trunks(lineages)
    assert len(trunks) == 2 * 2  # seeds x epochs: pruning methods share a trunk
    assert all(rewinds == (0, 3) for _, rewinds in trunks.values())


def test_set_overrides_fields_and_every_entry_of_a_list_section():
    config = load_config(QUICKSTART, ["train.epochs=2", "seeds=[3]", "pruning.rounds=2", "model.width=8"])
    lineages = expand_lineages(config)
    assert {l.trunk.train.epochs for l in lineages} == {2}
    assert {l.trunk.seed for l in lineages} == {3}
    assert {l.pruning.rounds for l in lineages} == {2}
    assert {l.trunk.model.width for l in lineages} == {8}


def test_identity_is_the_spec_not_the_file(tmp_path):
    a = expand_lineages(load_config(write(tmp_path, "name: a\nseeds: [0]\npruning: {rate: 0.2, rounds: 2}\n")))
    b = expand_lineages(load_config(write(tmp_path, "pruning: {rounds: 2, rate: 0.2, scope: global}\nseeds: 0\nname: b\n")))
    c = expand_lineages(load_config(write(tmp_path, "seeds: [0]\npruning: {rate: 0.2, rounds: 3}\n")))
    assert a[0].id == b[0].id and a[0].canonical() == b[0].canonical()
    assert c[0].id != a[0].id


def test_resizing_the_analysis_pool_keeps_the_sweep_s_identity():
    quickstart = make_plan(load_config(QUICKSTART))
    resized = make_plan(load_config(QUICKSTART, ["analysis.actors=3", "analysis.cpus_per_actor=1"]))
    assert resized.config.analysis.actors == 3
    assert resized.sweep_id == quickstart.sweep_id
    # the quickstart of 2026-11-30 has the id it had before this rule
    before = ["train.epochs=8", "train.lr=0.002", "pruning.rate=0.4", "pruning.rounds=5"]
    assert make_plan(load_config(QUICKSTART, [*before, "analysis.actors=3"])).sweep_id == "a8498abef5aa"
    assert resized.config.analysis.id == quickstart.config.analysis.id
    measured_differently = make_plan(load_config(QUICKSTART, ["analysis.gradcam.images=64"]))
    assert measured_differently.sweep_id != quickstart.sweep_id  # what is measured stays part of it


@pytest.mark.parametrize(
    "args,named",
    [
        (["--set", "pruning.rate=1.5"], "pruning.rate"),
        (["--set", "pruning.rate=0"], "pruning.rate"),
        (["--set", "pruning.rounds=0"], "pruning.rounds"),
        (["--set", "pruning.rewind=-1"], "pruning.rewind"),
        (["--set", "pruning.rewind=100000"], "pruning.rewind"),
        (["--set", "pruning.method=magic"], "pruning.method"),
        (["--set", "data.path=/no/such/dir"], "data.path"),
        (["--set", "data.name=imagenet9000"], "data.name"),
        (["--set", "train.bogus=1"], "train.bogus"),
        (["--set", "train.epochs=abc"], "train.epochs"),
        (["--set", "colour=blue"], "colour"),
        (["--set", "resources.cpus_per_trial=0"], "resources.cpus_per_trial"),
        (["--set", "noequals"], "noequals"),
        (["/no/such/config.yaml"], "/no/such/config.yaml"),
    ],
)
def test_bad_input_exits_2_names_the_field_and_writes_nothing(workdir, capsys, args, named):
    command = ["sweep", *args] if args[0].startswith("/") else ["sweep", *args]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert list(workdir.iterdir()) == []  # no mlflow.db, no mlruns, no Ray storage


def test_broken_yaml_is_reported_with_its_file(workdir, capsys):
    path = write(workdir, "name: x\nseeds: [0\n")
    assert main(["sweep", path]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert [p.name for p in workdir.iterdir()] == ["sweep.yaml"]


def test_dry_run_prints_the_plan_and_starts_nothing(workdir, capsys):
    assert main(["sweep", "--dry-run", "--set", "seeds=[0,1,2]"]) == 0
    out = capsys.readouterr().out
    assert "3 trunk(s), 18 lineage(s), 72 rounds" in out
    assert "imp@125 s2" in out and "imp+reinit s0" in out
    (control,) = [line for line in out.splitlines() if "imp+reinit s0 " in line]
    assert control.endswith("its tickets shared with the method's other lineages (trained once)")
    (imp,) = [line for line in out.splitlines() if "imp s0 " in line]
    assert control.split("; ")[1] == imp.split("; ")[1]  # the same iterations: the control trains once per round
    assert list(workdir.iterdir()) == []


def test_config_error_type_is_raised_for_programmatic_use():
    with pytest.raises(ConfigError, match="pruning.rounds"):
        make_plan(load_config(QUICKSTART, ["pruning.rounds=0"]))


def test_set_can_name_one_entry_of_a_list_section():
    config = load_config(QUICKSTART, ["pruning[1].rewind=7", "pruning.rounds=2"])
    rewinds = [l.pruning.rewind for l in expand_lineages(config) if l.trunk.seed == 0]
    assert rewinds == ["init", 7, "init", "init", "init", "init"]
    with pytest.raises(ConfigError, match=r"pruning\[9\]"):
        load_config(QUICKSTART, ["pruning[9].rewind=7"])


@pytest.mark.parametrize("path", sorted((QUICKSTART.parent).glob("**/*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_is_valid(path, workdir, capsys):
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert "lineage(s)" in capsys.readouterr().out


def test_an_unreachable_ray_address_exits_2_and_writes_nothing(workdir, capsys):
    assert main(["sweep", "--set", "seeds=[0]", "--address", "127.0.0.1:1"]) == 2
    assert "--address 127.0.0.1:1" in capsys.readouterr().err
    assert list(workdir.iterdir()) == []


def test_a_dry_run_says_whether_the_store_holds_the_sweep_and_how_far_it_got(workdir, capsys):
    """Read only: no store is created by asking."""
    assert main(["sweep", "--set", "seeds=[0]", "--dry-run"]) == 0
    assert "not created yet; running the sweep creates it" in capsys.readouterr().out
    assert list(workdir.iterdir()) == []
    from lth_sweep.orchestrator.mlflow_runs import SweepTracker
    from lth_sweep.orchestrator.plan import make_plan

    plan = make_plan(load_config(QUICKSTART, ["seeds=[0]"]))
    SweepTracker(f"sqlite:///{workdir / 'mlflow.db'}", plan.config.tracking.experiment, plan.config.name, plan.sweep_id)
    assert main(["sweep", "--set", "seeds=[0]", "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "this sweep is in it (parent run " in said and "0/6 lineages finished; running it continues it" in said
