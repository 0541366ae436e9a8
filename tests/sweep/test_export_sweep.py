"""`lth export` on a real sweep (Ray Tune trials logging to MLflow on SQLite): every round's ticket
is in MLflow and equals the network the lineage evaluated; `--winning` and `--round 1` through the
CLI write files that predict as that network does."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator.cli import main
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.plan import make_plan
from tests.support.sweeps import runs_of, sweep_yaml
from lth_sweep.trainables import record
from lth_sweep.export import ticket_loader
from lth_sweep.trainables.ticket_packing import load_ticket
from lth_sweep.trainables.lineage import run_lineage
from lth_sweep.trainables.models import build_model
from lth_sweep.trainables.trunk import cached_dataset, train_trunk

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")]

PRUNING = [{"method": "imp", "rate": 0.5, "rounds": 3}, {"method": "filter", "rate": 0.5, "rounds": 2}]
TRAIN = {"epochs": 3}


def in_process(spec):
    """The lineage run again here, as the trial ran it (one thread): its rounds, bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_lineage(spec, train_trunk(spec.trunk, (spec.pruning.rewind_iteration,)))
    finally:
        torch.set_num_threads(threads)


def logits_of(spec, weights, images):
    data = cached_dataset(spec.trunk.data)
    model = build_model(spec.trunk.model, in_channels=data.in_channels, image_size=data.image_size, num_classes=data.num_classes)
    model.load_state_dict(weights)
    with torch.no_grad():
        return model.eval()(images)


def test_a_sweeps_rounds_export_and_predict_as_the_lineage_evaluated(ray_session, tmp_path, monkeypatch, capsys):
    (tmp_path / "sweep.yaml").write_text(sweep_yaml("exports", PRUNING, train=TRAIN))
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "sweep.yaml"]) == 0
    capsys.readouterr()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {run.data.tags[record.LABEL]: run for run in runs_of(client, "lineage")}
    specs = {spec.pruning.label: spec for spec in make_plan(load_config(tmp_path / "sweep.yaml")).lineages}
    local = {label: in_process(spec) for label, spec in specs.items()}
    for label, results in local.items():  # every round's ticket, as the lineage evaluated it
        for result in results:
            path = client.download_artifacts(runs[label].info.run_id, record.round_ticket(result.state.round), str(tmp_path / label))
            weights, masks = load_ticket(path)
            assert weights.keys() == result.evaluated.keys()
            assert all(torch.equal(weights[k], v) for k, v in result.evaluated.items()), (label, result.state.round)
            assert all(torch.equal(masks[k], v) for k, v in result.evaluated_masks.items()), (label, result.state.round)

    from lth_sweep.analysis.query import read_sweep
    from lth_sweep.analysis.sweep_verdicts import judge

    frame = read_sweep("exports", f"sqlite:///{tmp_path / 'mlflow.db'}").frame()
    winning = {row["method"]: row["ticket_round"] for row in judge(frame, [])["winning"]}["imp"]
    assert winning is not None  # this tiny IMP lineage stays level with its trunk (tests/unit/test_export.py: the same runs)

    images = cached_dataset(specs["imp"].trunk.data).test.batch(slice(0, 64))[0]
    base = ["export", "--sweep", "exports", "--seed", "0"]
    assert main([*base, "--label", "imp", "--winning", "--out", "won"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'won'} (safetensors: imp seed 0, winning ticket, round {winning})"
    won = ticket_loader.load(tmp_path / "won")
    assert ticket_loader.read_metadata(tmp_path / "won")["ticket"]["mlflow_run_id"] == runs["imp"].info.run_id
    with torch.no_grad():
        assert torch.equal(won(images), logits_of(specs["imp"], local["imp"][winning - 1].evaluated, images))

    assert main([*base, "--label", "imp", "--round", "1", "--format", "torchscript", "--out", "r1.pt"]) == 0
    with torch.no_grad():
        round_1 = torch.jit.load(str(tmp_path / "r1.pt"))(images)
        assert torch.equal(round_1, logits_of(specs["imp"], local["imp"][0].evaluated, images))

    assert main([*base, "--label", "filter", "--round", "1", "--format", "onnx", "--slim", "--out", "slim.onnx"]) == 0
    assert "slim" in capsys.readouterr().out
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "slim.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    assert torch.allclose(got, logits_of(specs["filter"], local["filter"][0].evaluated, images), atol=1e-5)

    # the winning ticket in MLflow's model registry: a version whose source is the lineage's run,
    # loaded with MLflow's own API (onnx flavor: nothing unpickled), predicting as the lineage evaluated
    import mlflow

    status = client.get_run(runs["imp"].info.run_id).info.status
    assert main([*base, "--label", "imp", "--winning", "--register", "exports-imp"]) == 0
    assert capsys.readouterr().out.strip().startswith("registered models:/exports-imp/1 (ONNX; source run")
    version = client.get_model_version("exports-imp", "1")
    assert version.run_id == runs["imp"].info.run_id and version.tags["lth.round"] == str(winning)
    assert client.get_run(runs["imp"].info.run_id).info.status == status  # logging the model left the run as it was
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        loaded = mlflow.pyfunc.load_model("models:/exports-imp/1")
        files = Path(mlflow.artifacts.download_artifacts("models:/exports-imp/1", dst_path=str(tmp_path / "registered")))
    finally:
        mlflow.set_tracking_uri(None)
    # it takes pixels in [0, 1], as the dataset holds them before normalising, and scores as the lineage did
    data = cached_dataset(specs["imp"].trunk.data)
    test_images, test_labels = data.test.batch(slice(0, len(data.test)))
    logits = torch.from_numpy(loaded.predict(data.to_pixels(test_images).numpy())["logits"])
    expected = logits_of(specs["imp"], local["imp"][winning - 1].evaluated, test_images)
    assert torch.allclose(logits, expected, atol=1e-4)
    top2 = expected.topk(2, dim=1).values
    near_ties = int((top2[:, 0] - top2[:, 1] < 1e-4).sum())  # where float rounding may pick the other class
    logged = {m.step: m.value for m in client.get_metric_history(runs["imp"].info.run_id, "test/acc")}[winning]
    accuracy = (logits.argmax(1) == test_labels).float().mean().item()
    assert abs(accuracy - logged) <= near_ties / len(test_labels) + 1e-9, (accuracy, logged)
    assert loaded.metadata.get_input_schema().inputs[0].name == "images"
    names = sorted(path.name for path in files.rglob("*") if path.is_file())
    assert "model.onnx" in names and "MLmodel" in names
    assert not [name for name in names if name.endswith((".pkl", ".pickle", ".pth", ".pt", ".cloudpickle"))], names
