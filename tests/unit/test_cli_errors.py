"""Reading commands name what is wrong and exit 2 (real MLflow on SQLite in a temp dir)."""
from __future__ import annotations

from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator.cli import main


def test_an_unknown_sweep_exits_2_naming_it_and_the_store(mlflow_store, capsys):
    uri = mlflow_store
    MlflowClient(uri).search_experiments()  # a real, empty store
    for command in ("query", "tickets"):
        assert main([command, "--sweep", "nope", "--tracking-uri", uri]) == 2
        err = capsys.readouterr().err
        assert "no sweep named 'nope'" in err and uri in err and "Traceback" not in err
