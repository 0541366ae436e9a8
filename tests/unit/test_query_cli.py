"""`lth query` on a small real sweep (SQLite, logged in-process as `lth sweep` logs it, no Ray):
typed config columns, one-line errors that name the fix, a readable default table, a closed pipe."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import lth_sweep
from lth_sweep.analysis.query import SweepNotFound, load_sweep
from tests.support.lth_cli import run_lth
from tests.support.tiny import REWIND, tiny_lineage
from tests.unit.test_export import log_sweep

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = {"imp", "imp+reinit", f"imp@{REWIND}"}


@pytest.fixture(scope="module")
def uri(_empty_mlflow_db, _trained_tiny_trunk, tmp_path_factory) -> str:
    """A sweep "quickstart" of three one-round IMP lineages: plain, reinitialised, rewound."""
    folder = tmp_path_factory.mktemp("query-store")
    shutil.copyfile(_empty_mlflow_db, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    specs = [tiny_lineage(rounds=1), tiny_lineage(rounds=1, reinit=True), tiny_lineage(rounds=1, rewind=REWIND)]
    log_sweep(uri, "quickstart", copy.deepcopy(_trained_tiny_trunk), specs)
    return uri


def query(uri: str, tmp_path, *args: str):
    return run_lth(["query", "--sweep", "quickstart", "--tracking-uri", uri, *args], tmp_path)


def labels(csv: str) -> set[str]:
    return {line.split(",")[0] for line in csv.splitlines()[1:]}


# --- config columns have their values' types --------------------------------------------------------
def test_config_columns_compare_as_the_values_they_hold(uri, tmp_path):
    reinit = query(uri, tmp_path, "--where", "`pruning.reinit` == True", "--columns", "label", "--format", "csv")
    assert reinit.code == 0 and labels(reinit.stdout) == {"imp+reinit"}, reinit.stderr
    rewound = query(uri, tmp_path, "--where", f"`pruning.rewind` == {REWIND}", "--columns", "label", "--format", "csv")
    assert rewound.code == 0 and labels(rewound.stdout) == {f"imp@{REWIND}"}, rewound.stderr
    at_init = query(uri, tmp_path, "--where", "`pruning.rewind` == 'init' and `pruning.rate` > 0.4", "--columns", "label",
                    "--format", "csv")
    assert labels(at_init.stdout) == {"imp", "imp+reinit"}
    frame = load_sweep("quickstart", uri)
    assert frame["pruning.reinit"].dtype == bool and frame["pruning.rounds"].dtype == "int64"
    assert frame["pruning.rate"].dtype == float and frame["trunk.model.name"].tolist() == ["conv2"] * 3
    assert frame["trunk.data.path"].isna().all()  # logged as "null"
    assert frame["config"].tolist() == ["shapes/conv2"] * 3  # the verdicts' trunk configurations are named as before


def test_a_param_column_takes_the_type_all_its_values_parse_as():
    from lth_sweep.analysis.query import typed

    def of(*values):
        return typed(pd.Series(values, dtype=object))

    assert of("1", "2").tolist() == [1, 2] and of("1", "2").dtype == "int64"
    assert of("1", "null").dtype == "Int64" and of("1", "null").isna().tolist() == [False, True]
    assert of("1", "0.5").tolist() == [1.0, 0.5] and of("1e-05", "None").dtype == float
    assert of("True", "False").tolist() == [True, False] and of("True", "null").dtype == "boolean"
    assert of("init", "125", "null").tolist() == ["init", 125, None]
    assert of("sgd", "null").tolist()[0] == "sgd" and of("sgd", "null").isna().tolist() == [False, True]
    assert of("[]", "1_000", " 1").tolist() == ["[]", "1_000", " 1"]  # not numbers as Python's int() reads them
    assert of("null", None).isna().all()


# --- errors name the fix, on one line ---------------------------------------------------------------
def test_a_slash_column_without_backticks_is_told_to_use_them(uri, tmp_path):
    said = query(uri, tmp_path, "--where", "test/acc > 0.1 and round == 1")
    assert said.code == 2 and not said.traceback and said.stdout == ""
    assert said.stderr == ("lth: --where 'test/acc > 0.1 and round == 1': column names with a slash or a dot go in "
                           "backticks: --where '`test/acc` > 0.1 and round == 1'\n")
    for where in ("pruning.rate > 0.1", "label == 'imp' and test/acc >= 0"):
        told = query(uri, tmp_path, "--where", where)
        assert told.code == 2 and told.stderr.count("\n") == 1
        suggested = told.stderr.rstrip("\n").split(" go in backticks: --where ", 1)[1]
        as_typed = subprocess.run(["bash", "-c", f"printf %s {suggested}"], capture_output=True, text=True, check=True).stdout
        assert "`" in as_typed  # the shell kept the backticks
        assert query(uri, tmp_path, "--where", as_typed, "--format", "csv").code == 0


def test_close_names_are_offered(uri, tmp_path):
    sweep = run_lth(["query", "--sweep", "quickstrat", "--tracking-uri", uri], tmp_path)
    assert sweep.code == 2 and "no sweep named 'quickstrat' in any experiment; did you mean 'quickstart'?" in sweep.stderr
    with pytest.raises(SweepNotFound, match="did you mean 'quickstart'"):
        load_sweep("quickstrat", uri, sql=False)  # the same through MLflow's client
    columns = query(uri, tmp_path, "--columns", "label", "test_acc")
    assert columns.code == 2
    assert columns.stderr == "lth: --columns: no column 'test_acc' (did you mean test/acc or dense/test/acc?)\n"
    where = query(uri, tmp_path, "--where", "lable == 'imp'")
    assert where.code == 2 and "no column 'lable' (did you mean `label`?)" in where.stderr and not where.traceback
    quoted = query(uri, tmp_path, "--where", "`tset/acc` > 0.1")
    assert quoted.code == 2 and "no column 'tset/acc' (did you mean `test/acc`" in quoted.stderr
    bare = query(uri, tmp_path, "--where", "label == imp")
    assert bare.code == 2 and "no column 'imp' (a text value goes in quotes" in bare.stderr


def test_a_where_that_keeps_no_row_says_so(uri, tmp_path):
    said = query(uri, tmp_path, "--where", "round > 5", "--format", "csv")
    assert said.code == 0 and "lth: no rows match --where 'round > 5'" in said.stderr


# --- the default table ------------------------------------------------------------------------------
def test_the_default_table_is_readable_and_the_formats_give_every_column(uri, tmp_path):
    table = query(uri, tmp_path)
    assert table.code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["label", "seed", "round", "sparsity", "test/acc"] and len(lines) == 4
    assert max(map(len, lines)) < 100
    every = load_sweep("quickstart", uri).columns
    assert f"lth: {len(every) - 5} more columns" in table.stderr and "--format csv or json gives them all" in table.stderr
    csv = query(uri, tmp_path, "--format", "csv")
    assert csv.stdout.splitlines()[0].split(",") == list(every) and "more columns" not in csv.stderr
    records = json.loads(query(uri, tmp_path, "--format", "json").stdout)
    assert list(records[0]) == list(every) and {r["label"] for r in records} == LABELS
    picked = query(uri, tmp_path, "--columns", "label", "pruning.rewind")
    assert picked.stdout.split()[:2] == ["label", "pruning.rewind"] and "more columns" not in picked.stderr


# --- a closed pipe ----------------------------------------------------------------------------------
def test_a_reader_that_stops_early_ends_it_quietly(uri, tmp_path):
    """`lth query | head`: the reader closes the pipe before lth writes (the interpreter takes
    seconds to start), so the write meets a closed pipe."""
    command = [sys.executable, "-m", "lth_sweep.orchestrator.cli", "query", "--sweep", "quickstart", "--tracking-uri", uri,
               "--format", "csv"]
    tickets = [*command[:3], "tickets", *command[4:]]  # and `lth tickets | head`
    for command in (command, tickets):
        process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        process.stdout.close()
        err = process.stderr.read()
        assert process.wait(timeout=120) == 141 and err == "", (command, err)


def test_a_tickets_metric_typo_is_offered_the_close_name(uri, tmp_path):
    said = run_lth(["tickets", "--sweep", "quickstart", "--tracking-uri", uri, "--metric", "test_acc"], tmp_path)
    assert said.code == 2 and "not measured in this sweep: no column 'test_acc' (did you mean test/acc" in said.stderr


# --- the Python API ---------------------------------------------------------------------------------
def test_judge_reads_a_sweep_from_the_store_it_is_given(uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./mlflow.db here: only tracking_uri can find the sweep
    verdicts = lth_sweep.judge("quickstart", tracking_uri=uri, experiment="export")
    assert json.dumps(verdicts, default=str) == json.dumps(lth_sweep.judge(load_sweep("quickstart", uri)), default=str)
    assert {row["method"] for row in verdicts["winning"]} == LABELS
    with pytest.raises(TypeError, match="`sweep` is a frame"):
        lth_sweep.judge(load_sweep("quickstart", uri), tracking_uri=uri)
