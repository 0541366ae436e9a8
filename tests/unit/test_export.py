"""`lth export`: every round's ticket kept in MLflow, packed and rebuilt bit for bit; a lineage's
round exported as safetensors (+ standalone loader), TorchScript and ONNX and run in a fresh Python
that cannot import lth-sweep; `--slim` cuts filter-pruned channels out with the same outputs; bad
input is named. No Ray: tiny lineages train in-process and log to a real MLflow store (SQLite)
through the sweep's own tracker and the trial's RunLogger."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, replace as dataclasses_replace
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file, save_file

from lth_sweep.orchestrator.mlflow_runs import SweepTracker
from lth_sweep.orchestrator.plan import display_name
from tests.support.lth_cli import run_lth
from tests.support.tiny import shapes_model, tiny_lineage, tiny_trunk
from lth_sweep.trainables import record
from lth_sweep.export import formats, ticket_loader
from lth_sweep.export.errors import ExportError
from lth_sweep.export.export import ExportRequest, export_onnx_model, export_ticket
from lth_sweep.export.metadata import FORMAT_VERSION, METADATA_KEY
from lth_sweep.export.output import staged
from lth_sweep.trainables.ticket_packing import load_ticket, pack_ticket, save_ticket, unpack_ticket
from lth_sweep.export.standalone import NotStandalone, standalone_source
from lth_sweep.trainables.lineage import RoundResult, run_lineage
from lth_sweep.trainables.models import MODELS, build_model
from lth_sweep.trainables.run_logger import RunLogger
from lth_sweep.trainables.trunk import cached_dataset, train_trunk

pytestmark = pytest.mark.usefixtures("one_thread")

EXPERIMENT = "export"
TRAIN = {"epochs": 3}  # enough for the tiny IMP lineage to stay level with its trunk for a few rounds
IMP = dict(method="imp", rate=0.5, rounds=3)
FILTER = dict(method="filter", rate=0.5, rounds=2)


@dataclass
class Store:
    uri: str
    folder: Path
    results: dict[str, list[RoundResult]]  # label -> the rounds as the lineage computed them
    runs: dict[str, str]  # label -> run id (sweep "tiny")

    def request(self, label: str = "imp", **options) -> ExportRequest:
        return ExportRequest(**{"tracking_uri": self.uri, "sweep": "tiny", "label": label, "seed": 0, **options})


def log_sweep(uri: str, name: str, trunk, specs, per_round_tickets: bool = True) -> tuple[dict, dict]:
    """A sweep's record as `lth sweep` leaves it (parent, trunk, lineages), made in-process: each
    round logged by the trial's RunLogger; `per_round_tickets=False` logs as lth-sweep did before
    every round's ticket was kept (the last round's as ticket/weights + ticket/masks)."""
    tracker = SweepTracker(uri, EXPERIMENT, name, f"{name}-id")
    trunk_run = tracker.child(record.TRUNK_KIND, trunk.spec, "trunk")
    tracker.log_missing_metrics(trunk_run.info.run_id, {(k, 0): v for k, v in {**trunk.metrics, "sparsity": 0.0}.items()})
    tracker.client.set_terminated(trunk_run.info.run_id, "FINISHED")
    results, runs = {}, {}
    for spec in specs:
        tags = {record.METHOD: spec.pruning.method, record.LABEL: spec.pruning.label, record.TRUNK: spec.trunk.id}
        run_id = tracker.child(record.LINEAGE_KIND, spec, display_name(spec), tags=tags).info.run_id
        logger = RunLogger(uri, run_id)

        def report(result: RoundResult, logger=logger, last=spec.pruning.rounds) -> None:
            if per_round_tickets:
                logger.log_round(result.state.round, result.metrics, result.state.masks, result.evaluated, result.evaluated_masks)
            else:
                logger.log_round(result.state.round, result.metrics, result.state.masks)
            if result.state.round == last:
                logger.log_tensors(record.TICKET_WEIGHTS, result.evaluated)
                logger.log_tensors(record.TICKET_MASKS, result.evaluated_masks)

        results[spec.pruning.label] = run_lineage(spec, trunk, on_round=report)
        runs[spec.pruning.label] = run_id
        logger.finish()
    return results, runs


@pytest.fixture(scope="module")
def store(_empty_mlflow_db, tmp_path_factory) -> Store:
    folder = tmp_path_factory.mktemp("export-store")
    shutil.copyfile(_empty_mlflow_db, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    trunk = train_trunk(tiny_trunk(**TRAIN))
    results, runs = log_sweep(uri, "tiny", trunk, [tiny_lineage(train=TRAIN, **IMP), tiny_lineage(train=TRAIN, **FILTER)])
    log_sweep(uri, "legacy", trunk, [tiny_lineage(train=TRAIN, **IMP)], per_round_tickets=False)
    return Store(uri, folder, results, runs)


def reference_logits(result: RoundResult, images: torch.Tensor) -> torch.Tensor:
    """What the lineage's own network, built by lth-sweep, says about `images`."""
    spec = tiny_trunk(**TRAIN)
    data = cached_dataset(spec.data)
    model = build_model(spec.model, in_channels=data.in_channels, image_size=data.image_size, num_classes=data.num_classes)
    model.load_state_dict(result.evaluated)
    with torch.no_grad():
        return model.eval()(images)


def some_images(count: int = 32) -> torch.Tensor:
    return cached_dataset(tiny_trunk(**TRAIN).data).test.batch(slice(0, count))[0]


# --- a fresh Python that cannot import lth-sweep -------------------------------------------------
FRESH = """
import json, sys
sys.path.append(SITE)  # the venv's packages, without its .pth files (-S): the editable lth-sweep stays out
try:
    import lth_sweep.trainables
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("lth-sweep is importable here")
import torch
from safetensors.torch import load_file, save_file
kind, path, inputs, out = sys.argv[1:5]
images = load_file(inputs)["images"]
if kind == "safetensors":
    sys.path.insert(0, path)
    from load_ticket import load, read_metadata
    model, metadata = load(path), read_metadata(path)
    with torch.no_grad():
        logits = model(images)
    parameters = sum(p.numel() for p in model.parameters())
elif kind == "torchscript":
    extra = {"lth.ticket.json": ""}
    model = torch.jit.load(path, _extra_files=extra)
    metadata = json.loads(extra["lth.ticket.json"])
    with torch.no_grad():
        logits = model(images)
    parameters = sum(p.numel() for p in model.parameters())
else:
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    metadata = json.loads(session.get_modelmeta().custom_metadata_map["lth.ticket"])
    logits = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    parameters = None
save_file({"logits": logits.contiguous()}, out)
print(json.dumps({"metadata": metadata, "parameters": parameters}))
"""


def made(folder: Path) -> Path:
    folder.mkdir()
    return folder


def run_fresh(kind: str, path: Path, images: torch.Tensor, tmp_path: Path) -> tuple[torch.Tensor, dict, int | None]:
    """(logits, metadata, parameter count) of the export at `path`, from `python -S` in tmp_path
    with only the venv's site-packages on its path."""
    inputs, out = tmp_path / "inputs.safetensors", tmp_path / "logits.safetensors"
    save_file({"images": images.contiguous()}, inputs)
    script = FRESH.replace("SITE", repr(sysconfig.get_paths()["purelib"]))
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-S", "-c", script, kind, str(path), str(inputs), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    return load_file(out)["logits"], said["metadata"], said["parameters"]


# --- every round's ticket, packed -------------------------------------------------------------------
def test_packing_rebuilds_a_rounds_weights_bit_for_bit_and_small(store, tmp_path):
    result = store.results["imp"][-1]
    file = tmp_path / "ticket.safetensors"
    save_ticket(file, result.evaluated, result.evaluated_masks)
    weights, masks = load_ticket(file)
    assert list(weights) == list(result.evaluated) and list(masks) == list(result.evaluated_masks)
    for name, value in result.evaluated.items():  # bit for bit: the sign of a pruned -0.0 too
        assert weights[name].dtype == value.dtype and bits(weights[name]) == bits(value), name
    assert any(torch.signbit(value[~result.evaluated_masks[name]]).any() for name, value in result.evaluated.items()
               if name in result.evaluated_masks)  # training leaves -0.0 where it masks a negative weight
    for name, mask in result.evaluated_masks.items():
        assert torch.equal(masks[name], mask.to(torch.bool)), name
    dense = tmp_path / "dense.safetensors"
    masks = {f"mask/{k}": m for k, m in result.evaluated_masks.items()}
    save_file({k: v.contiguous() for k, v in {**result.evaluated, **masks}.items()}, dense)
    assert file.stat().st_size < 0.3 * dense.stat().st_size  # 87.5% sparse: kept values + 1 bit a mask entry


def bits(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().numpy().tobytes()


def test_packing_keeps_a_weight_that_is_not_zero_where_masked(store):
    """Never produced by training, but packing must not lose it: such a weight is stored in full."""
    result = store.results["imp"][0]
    name = next(iter(result.evaluated_masks))
    weights = dict(result.evaluated)
    weights[name] = weights[name].clone() + 0.5  # non-zero at pruned places too
    rebuilt, masks = unpack_ticket(*pack_ticket(weights, result.evaluated_masks))
    assert torch.equal(rebuilt[name], weights[name]) and torch.equal(masks[name], result.evaluated_masks[name])


def test_every_round_keeps_the_network_it_evaluated(store, tmp_path):
    client = MlflowClient(store.uri)
    for label in ("imp", "filter"):
        run_id = store.runs[label]
        logged = {item.path for item in client.list_artifacts(run_id, "tickets")}
        assert logged == {record.round_ticket(r.state.round) for r in store.results[label]}
        for result in store.results[label]:
            weights, masks = load_ticket(client.download_artifacts(run_id, record.round_ticket(result.state.round), str(tmp_path)))
            assert all(torch.equal(weights[k], v) for k, v in result.evaluated.items()) and weights.keys() == result.evaluated.keys()
            assert all(torch.equal(masks[k], v) for k, v in result.evaluated_masks.items())


def test_a_replayed_round_does_not_log_its_ticket_again(store, tmp_path):
    """A restarted trial replays rounds after its checkpoint; those MLflow holds are not logged again."""
    client = MlflowClient(store.uri)
    run_id = store.runs["imp"]
    first = store.results["imp"][0]
    zeros = {k: torch.zeros_like(v) for k, v in first.evaluated.items()}
    RunLogger(store.uri, run_id).log_round(1, first.metrics, first.state.masks, zeros, first.evaluated_masks)
    weights, _ = load_ticket(client.download_artifacts(run_id, record.round_ticket(1), str(tmp_path)))
    assert all(torch.equal(weights[k], v) for k, v in first.evaluated.items())
    assert [m.step for m in client.get_metric_history(run_id, record.ROUND_DONE)] == [1, 2, 3]


# --- exports, run where lth-sweep is not -------------------------------------------------------------
@pytest.mark.parametrize("export_format", ["safetensors", "torchscript", "onnx"])
def test_each_format_runs_without_lth_sweep_and_predicts_as_the_round(store, tmp_path, export_format):
    out = tmp_path / ("ticket" if export_format == "safetensors" else f"ticket.{export_format}")
    path, metadata = export_ticket(store.request(round_index=2, export_format=export_format), out)
    assert path == out.absolute() and out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary folder left beside it
    images = some_images()
    logits, said, _ = run_fresh(export_format, out, images, made(tmp_path / "fresh"))
    expected = reference_logits(store.results["imp"][1], images)
    if export_format == "onnx":
        assert torch.allclose(logits, expected, atol=1e-5)
    else:
        assert torch.equal(logits, expected)
    assert said == json.loads(json.dumps(metadata))
    ticket = said["ticket"]
    assert (ticket["label"], ticket["method"], ticket["round"], ticket["seed"], ticket["winning"]) == ("imp", "imp", 2, 0, False)
    assert ticket["sweep"] == "tiny" and ticket["sweep_id"] == "tiny-id" and ticket["mlflow_run_id"] == store.runs["imp"]
    assert said["format_version"] == FORMAT_VERSION and said["export_format"] == export_format
    arguments = {"depth": 2, "in_channels": 3, "image_size": 16, "num_classes": 9, "width": 4}
    assert said["model"] == {"name": "conv2", "class": "ConvNet", "arguments": arguments}
    assert said["input"]["shape"] == [3, 16, 16] and said["input"]["normalisation"]["mean"] == [0.5] * 3
    assert said["classes"]["count"] == 9 and len(said["classes"]["names"]) == 9
    metrics = store.results["imp"][1].metrics
    assert said["sparsity"]["effective"] == metrics["sparsity"] and said["sparsity"]["masked"] == metrics["sparsity/masked"]
    assert said["lth_sweep_version"] and said["slim"] is None


@pytest.mark.parametrize("name,width", [
    ("conv2", 4), ("conv4", 4), ("conv6", 4), ("lenet_300_100", 30), ("resnet20", 4), ("resnet56", 4), ("vgg16", 4), ("vgg19", 4),
])
def test_built_in_models_load_standalone(tmp_path, name, width):
    """The safetensors export's model.py + load_ticket.py rebuild each built-in model of the quickstart
    and tests exactly, with masks applied (random ones here: the architecture is what is tested)."""
    model = shapes_model(name, width, seed=0).eval()
    with torch.no_grad():
        for weight in model.pruned_weights():
            parameter = model.get_parameter(weight)
            parameter.mul_(torch.rand_like(parameter) > 0.7)
    factory = MODELS[name]
    cls = getattr(factory, "func", factory)
    arguments = {**getattr(factory, "keywords", {}), "in_channels": 3, "image_size": 16, "num_classes": 9, "width": width}
    metadata = {"model": {"name": name, "class": cls.__name__, "arguments": arguments}}
    folder = tmp_path / "export"
    folder.mkdir()
    images = torch.randn(8, 3, 16, 16)
    formats.write_safetensors(model, cls, metadata, images, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["load_ticket.py", "model.py", "weights.safetensors"]
    assert "trainables" not in (folder / "model.py").read_text().replace("lth-sweep's trainables", "")
    logits, _, parameters = run_fresh("safetensors", folder, images, made(tmp_path / "fresh"))
    with torch.no_grad():
        assert torch.equal(logits, model(images))
    assert parameters == sum(p.numel() for p in model.parameters())


def test_a_model_that_cannot_be_standalone_is_named_with_the_way_out():
    factory = MODELS["clip_vit_b32"]
    with pytest.raises(NotStandalone, match=r"model clip_vit_b32 .*open_clip.*--format torchscript or --format onnx"):
        standalone_source(factory.func, "clip_vit_b32")


def test_onnx_model_in_memory_with_its_metadata(store):
    """For the model registry: the ONNX model and its metadata, nothing written."""
    import onnxruntime

    proto, metadata = export_onnx_model(store.request(round_index=3))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props[METADATA_KEY]) == json.loads(json.dumps(metadata)) and props["format_version"] == FORMAT_VERSION
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    images = some_images(1)  # the batch dimension is free: one image
    logits = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    assert torch.allclose(logits, reference_logits(store.results["imp"][2], images), atol=1e-5)


# --- the winning round, and --slim ------------------------------------------------------------------
def test_winning_exports_the_round_lth_tickets_names(store, tmp_path):
    from lth_sweep.analysis.query import read_sweep
    from lth_sweep.analysis.sweep_verdicts import judge

    rows = judge(read_sweep("tiny", store.uri).frame(), [])["winning"]
    expected = {row["method"]: row["ticket_round"] for row in rows}
    assert expected["imp"] is not None and expected["filter"] is None  # the tiny sweep has both cases
    _, metadata = export_ticket(store.request(export_format="torchscript"), tmp_path / "won.pt")
    assert metadata["ticket"]["round"] == expected["imp"] and metadata["ticket"]["winning"] is True
    with pytest.raises(ExportError, match="label 'filter' has no winning ticket by Frankle & Carbin's rule.*--round K"):
        export_ticket(store.request("filter"), tmp_path / "none")
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("export_format", ["safetensors", "onnx"])
def test_slim_filter_ticket_is_smaller_with_the_same_outputs(store, tmp_path, export_format):
    out = tmp_path / ("slim" if export_format == "safetensors" else "slim.onnx")
    _, metadata = export_ticket(store.request("filter", round_index=2, export_format=export_format, slim=True), out)
    slim = metadata["slim"]
    assert slim["parameters_after"] < slim["parameters_before"] and metadata["parameters"] == slim["parameters_after"]
    assert slim["channels_removed"]  # filters of the convs, whose next layers lose their inputs
    images = some_images()
    logits, said, parameters = run_fresh(export_format, out, images, made(tmp_path / "fresh"))
    assert torch.allclose(logits, reference_logits(store.results["filter"][1], images), atol=1e-5)
    assert said["slim"] == slim
    if export_format == "safetensors":
        assert parameters == slim["parameters_after"]
        masked = tmp_path / "masked"
        export_ticket(store.request("filter", round_index=2), masked)
        assert (out / "weights.safetensors").stat().st_size < (masked / "weights.safetensors").stat().st_size


def test_slim_on_an_unstructured_lineage_is_refused(store, tmp_path):
    with pytest.raises(ExportError, match="--slim .*filter and channel_in.*'imp'"):
        export_ticket(store.request(round_index=1, slim=True), tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


# --- lineages logged before every round was kept ---------------------------------------------------
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_a_lineage_from_before_exports_its_last_round_only(store, tmp_path):
    legacy = ExportRequest(tracking_uri=store.uri, sweep="legacy", label="imp", seed=0, round_index=3, export_format="torchscript")
    export_ticket(legacy, tmp_path / "last.pt")
    with torch.no_grad():
        logits = torch.jit.load(str(tmp_path / "last.pt"))(some_images())
    assert torch.equal(logits, reference_logits(store.results["imp"][2], some_images()))
    earlier = ExportRequest(tracking_uri=store.uri, sweep="legacy", label="imp", seed=0, round_index=1)
    with pytest.raises(ExportError, match=r"round 1 of lineage imp seed 0 .* was not kept.*only its last round \(3\)"):
        export_ticket(earlier, tmp_path / "early")
    assert not (tmp_path / "early").exists()


# --- bad input, and never half an export -----------------------------------------------------------
def test_bad_choices_are_named(store, tmp_path):
    with pytest.raises(ExportError, match="no lineage labelled 'omp' with seed 0; it has: filter seed 0, imp seed 0"):
        export_ticket(store.request("omp", round_index=1), tmp_path / "a")
    with pytest.raises(ExportError, match="no lineage labelled 'imp' with seed 7"):
        export_ticket(store.request(seed=7, round_index=1), tmp_path / "a")
    with pytest.raises(ExportError, match="has no finished round 4; finished rounds: 1, 2, 3"):
        export_ticket(store.request(round_index=4), tmp_path / "a")
    with pytest.raises(ExportError, match="unknown export format 'pickle'"):
        store.request(round_index=1, export_format="pickle")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_is_kept_unless_forced(store, tmp_path):
    out = tmp_path / "ticket.onnx"
    out.write_text("mine")
    with pytest.raises(ExportError, match="exists; pass --force"):
        export_ticket(store.request(round_index=1, export_format="onnx"), out)
    assert out.read_text() == "mine"
    export_ticket(store.request(round_index=1, export_format="onnx"), out, force=True)
    assert out.read_bytes()[:4] != b"mine" and sorted(p.name for p in tmp_path.iterdir()) == ["ticket.onnx"]


def test_a_failed_write_leaves_nothing_and_the_old_export_whole(tmp_path):
    out = tmp_path / "ticket"
    out.mkdir()
    (out / "weights.safetensors").write_text("old")
    with pytest.raises(RuntimeError, match="midway"):
        with staged(out, force=True, directory=True) as target:
            (target / "weights.safetensors").write_text("half")
            raise RuntimeError("midway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ticket"] and (out / "weights.safetensors").read_text() == "old"


def test_the_cli_writes_one_line_and_maps_bad_input_to_exit_2(store, tmp_path):
    base = ["export", "--sweep", "tiny", "--seed", "0", "--tracking-uri", store.uri]
    done = run_lth([*base, "--label", "imp", "--round", "1", "--format", "torchscript", "--out", "t.pt"], tmp_path)
    assert done.code == 0, done.stderr
    assert done.stdout.strip().splitlines() == [f"wrote {tmp_path / 't.pt'} (torchscript: imp seed 0, round 1)"]
    again = run_lth([*base, "--label", "imp", "--round", "1", "--format", "torchscript", "--out", "t.pt"], tmp_path)
    assert again.code == 2 and "exists; pass --force" in again.stderr and not again.traceback
    slim = run_lth([*base, "--label", "imp", "--winning", "--slim", "--out", "s"], tmp_path)
    assert slim.code == 2 and "--slim" in slim.stderr and not slim.traceback
    nosweep = run_lth([*base[:2], "nope", *base[3:], "--label", "imp", "--round", "1", "--out", "n"], tmp_path)
    assert nosweep.code == 2 and "no sweep named 'nope'" in nosweep.stderr
    missing = run_lth(["export", *base[1:5], "--label", "imp", "--round", "1", "--out", "m"], made(tmp_path / "empty"))
    assert missing.code == 2 and "no database at" in missing.stderr and missing.left == []
    assert run_lth([*base, "--label", "imp", "--round", "0", "--out", "z"], tmp_path).code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "t.pt"]


def test_the_shipped_loader_reads_the_format_the_exporter_writes():
    assert ticket_loader.METADATA_KEY == METADATA_KEY and FORMAT_VERSION in ticket_loader.FORMAT_VERSIONS
    from lth_sweep.export.request import FORMATS

    assert all(callable(getattr(formats, f"write_{name}", None)) for name in FORMATS)  # every format the CLI offers is written


@pytest.mark.parametrize("name,dim", [("resnet20", 0), ("resnet20", 1), ("vgg16", 0), ("vgg16", 1)])
def test_slim_surgery_follows_residuals_norms_and_flattening(name, dim):
    """Filters (dim 0, with their norms' scale and shift, as the filter method removes them) or input
    channels (dim 1) cut to 30% of each layer's: the slim network computes what the masked one does,
    and is smaller. The norms' statistics are those of a few batches, so outputs depend on the input."""
    from lth_sweep.export.slim import slimmed
    from lth_sweep.trainables.masks import apply_masks, companion_masks
    from lth_sweep.trainables.pruning.structured import prune_channels

    model = shapes_model(name, 8, seed=0)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    masks = {n: torch.ones_like(weights[n], dtype=torch.bool) for n in model.pruned_weights()}
    protect = {model.prunable_weights()[-1] if dim == 0 else model.prunable_weights()[0]}
    masks, _ = prune_channels(weights, masks, dim=dim, norm="l1", target=0.7, scope="layerwise", protect=protect)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # a plain average over the batches below
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(0.0, 0.3)
        apply_masks(model, {**masks, **(companion_masks(model, masks) if dim == 0 else {})})
        model.train()
        for _ in range(4):
            model(torch.randn(32, 3, 16, 16))
    images = torch.randn(16, 3, 16, 16)
    slim, report = slimmed(model.eval(), images, model.prunable_weights()[-1].removesuffix(".weight"))
    assert report.parameters_after < 0.6 * report.parameters_before
    assert sum(p.numel() for p in slim.parameters()) == report.parameters_after
    with torch.no_grad():
        assert torch.allclose(slim(images), model(images), atol=1e-5)
        assert model(images).std(0).mean() > 1e-2  # outputs that depend on the input: the check is not vacuous


def test_slim_keeps_a_filter_whose_norm_still_emits_a_constant():
    """Filter weights zeroed but the norm after them left alone (as an unstructured method would):
    each such channel still emits relu(shift), which the next layers read, so nothing is cut."""
    from lth_sweep.export.slim import slimmed
    from lth_sweep.trainables.masks import apply_masks
    from lth_sweep.trainables.pruning.structured import prune_channels

    model = shapes_model("resnet20", 8, seed=0)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    masks = {n: torch.ones_like(weights[n], dtype=torch.bool) for n in model.pruned_weights()}
    masks, _ = prune_channels(weights, masks, dim=0, norm="l1", target=0.7, scope="layerwise", protect={"fc.weight"})
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.uniform_(0.1, 0.3)
        apply_masks(model, masks)
    images = torch.randn(16, 3, 16, 16)
    slim, report = slimmed(model.eval(), images, "fc")
    assert report.parameters_after == report.parameters_before and report.channels_removed == {}


# --- what the artifact store holds may rot: checked against the digest logged with it -------------
@pytest.fixture
def own_store(_empty_mlflow_db, tmp_path) -> tuple[str, str]:
    """A store of its own (its files get damaged): one IMP lineage of 2 rounds."""
    shutil.copyfile(_empty_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, runs = log_sweep(uri, "tiny", train_trunk(tiny_trunk(**TRAIN)), [tiny_lineage(train=TRAIN, **dict(IMP, rounds=2))])
    return uri, runs["imp"]


def _stored(uri: str, run_id: str, artifact: str) -> Path:
    from urllib.parse import urlparse

    return Path(urlparse(MlflowClient(uri).get_run(run_id).info.artifact_uri).path) / artifact


def test_an_altered_or_deleted_stored_ticket_is_refused_naming_the_file(own_store, tmp_path):
    """The sign bits of 200 kept weights flipped: a valid file that loads, other numbers. Today's
    export would write it with the round's metadata; it is refused, and so is a deleted round."""
    from safetensors import safe_open

    uri, run_id = own_store
    ticket = _stored(uri, run_id, record.round_ticket(2))
    with safe_open(str(ticket), "pt") as opened:
        metadata, tensors = opened.metadata(), {key: opened.get_tensor(key) for key in opened.keys()}
    kept = next(key for key, value in tensors.items() if value.dtype == torch.float32 and value.numel() >= 200)
    tensors[kept] = tensors[kept].clone()
    tensors[kept].view(-1)[:200] *= -1
    save_file(tensors, ticket, metadata=metadata)
    request = ExportRequest(tracking_uri=uri, sweep="tiny", label="imp", seed=0, round_index=2)
    with pytest.raises(ExportError, match=rf"round 2 of lineage imp seed 0 \(run {run_id}\): stored file .*"
                       rf"{ticket.parent.name}/{ticket.name} is truncated or altered: its sha256 differs"):
        export_ticket(request, tmp_path / "out")
    said = run_lth(["export", "--sweep", "tiny", "--label", "imp", "--seed", "0", "--round", "2", "--tracking-uri", uri,
                    "--out", "cli"], made(tmp_path / "cli"))
    assert said.code == 2 and "truncated or altered" in said.stderr and not said.traceback and said.left == []
    _stored(uri, run_id, record.round_ticket(1)).unlink()
    with pytest.raises(ExportError, match=r"round 1 of .*: stored file .*tickets/round_01.safetensors is missing \(the round was logged"):
        export_ticket(dataclasses_replace(request, round_index=1), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- issue 31.4: answered fast, files as any other, one name for the folder, silent from Python ------
HEAVY = {"torch", "torchvision", "timm", "torch_pruning"}


def lth_process(args: list[str], cwd: Path) -> tuple[int, str, set[str]]:
    """`lth` in a process of its own (`python -m`, `-X importtime`): its exit code, its stderr less
    the import lines, and the top-level packages it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "lth_sweep.orchestrator.cli", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    lines = done.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    return done.returncode, "\n".join(line for line in lines if not line.startswith("import time:")), imported


def test_export_errors_are_answered_before_torch_loads(store, tmp_path):
    """Every bad choice is judged from the store's records alone: no torch, torchvision, timm or
    torch-pruning (5-20 s of imports on a loaded machine before)."""
    base = ["export", "--sweep", "tiny", "--seed", "0", "--tracking-uri", store.uri, "--out"]
    (tmp_path / "taken").mkdir()
    cases = {
        "taken exists; pass --force": [*base, "taken", "--label", "imp", "--round", "1"],
        "no lineage labelled 'omp' with seed 0": [*base, "new", "--label", "omp", "--round", "1"],
        "has no finished round 9; finished rounds: 1, 2, 3": [*base, "new", "--label", "imp", "--round", "9"],
        "--slim cuts whole channels out": [*base, "new", "--label", "imp", "--round", "1", "--slim"],
        "r3.safetensors: a safetensors export is a folder": [*base, "r3.safetensors", "--label", "imp", "--round", "3"],
    }
    for message, args in cases.items():
        code, said, imported = lth_process(args, tmp_path)
        assert code == 2 and message in said and "Traceback" not in said, said[-3000:]
        assert not imported & HEAVY, f"{message}: imported {sorted(imported & HEAVY)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_exported_file_has_the_permissions_of_a_new_file(store, tmp_path, umask):
    previous = os.umask(umask)
    try:
        export_ticket(store.request(round_index=1), tmp_path / "folder")
        export_ticket(store.request(round_index=1, export_format="torchscript"), tmp_path / "file.pt")
    finally:
        os.umask(previous)
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")}
    files = ["folder/weights.safetensors", "folder/model.py", "folder/load_ticket.py", "file.pt"]
    assert modes == {"folder": 0o777 & ~umask, **dict.fromkeys(files, 0o666 & ~umask)}


def test_a_safetensors_folder_named_like_a_file_is_refused_naming_the_way_out(store, tmp_path):
    with pytest.raises(ExportError, match=r"r3\.safetensors: a safetensors export is a folder \(weights\.safetensors, "
                       r"model\.py, load_ticket\.py\), not one \.safetensors file; name the folder without the suffix \(r3\)$"):
        export_ticket(store.request(round_index=3), tmp_path / "r3.safetensors")
    with pytest.raises(ExportError, match=r"r3\.onnx: .*\(r3\), or export with format onnx for one \.onnx file"):
        export_ticket(store.request(round_index=3), tmp_path / "r3.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def notebook_logging(monkeypatch):
    """Output as a notebook shows it: logging on at INFO (README's example), lth-sweep's own
    records aside; MLflow's progress bar at its default."""
    import logging

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    root, handler = logging.getLogger(), logging.StreamHandler(sys.stderr)
    handler.addFilter(lambda record: not record.name.startswith("lth_sweep"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield
    root.removeHandler(handler)
    root.setLevel(level)


def test_the_python_api_exports_onnx_without_printing(store, tmp_path, capfd, notebook_logging):
    """Before: MLflow's progress bar, and the ONNX optimiser's passes."""
    import lth_sweep

    path = lth_sweep.export_ticket("tiny", label="imp", seed=0, round=2, format="onnx", out=tmp_path / "t.onnx",
                                   tracking_uri=store.uri)
    assert path == (tmp_path / "t.onnx").absolute() and path.is_file()
    assert capfd.readouterr() == ("", "")


def test_the_python_api_registers_without_printing(own_store, capfd, notebook_logging):
    """Before: MLflow's progress bar and its announcements of the registered model and version."""
    import lth_sweep

    uri, run_id = own_store
    assert lth_sweep.export_ticket("tiny", label="imp", seed=0, round=2, register="tiny-imp", tracking_uri=uri) is None
    assert capfd.readouterr() == ("", "")
    version = MlflowClient(uri).get_model_version("tiny-imp", "1")
    assert version.run_id == run_id and version.tags["lth.round"] == "2"


def readme_blocks(section: str) -> list[str]:
    """The python code blocks of README's section `section`."""
    from tests.support.sweeps import ROOT

    text = (ROOT / "README.md").read_text()
    body = re.split(r"\n#{2,3} ", text.split(f"\n### {section}\n", 1)[1], maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_the_readmes_snippets_read_the_metadata_and_feed_raw_pixels(store, tmp_path, monkeypatch):
    """README named the TorchScript extra file `lth.ticket` (it is `lth.ticket.json`): its snippet
    read nothing. Each step of each snippet runs here on exports named as it names them."""
    blocks = readme_blocks("Taking a ticket away")
    metadata_block = next(block for block in blocks if "_extra_files" in block)
    pixels_block = next(block for block in blocks if "preprocess(" in block)
    monkeypatch.chdir(tmp_path)
    for name in re.findall(r'"([\w-]+\.(?:pt|onnx))"', metadata_block):
        export_ticket(store.request(round_index=3, export_format="torchscript" if name.endswith(".pt") else "onnx"), name)
    imports, *steps = metadata_block.split("\n\n")
    namespace: dict = {}
    exec(imports, namespace)
    for step in steps:
        exec(step, namespace)
        info = namespace.pop("info")
        assert info["ticket"]["round"] == 3 and info["input"]["preprocessing"]["steps"], step
    folder = re.search(r'load_ticket\.load\("([\w-]+)"\)', pixels_block).group(1)
    _, metadata = export_ticket(store.request(round_index=3), folder)
    data = cached_dataset(tiny_trunk(**TRAIN).data)
    pixels = (data.to_pixels(some_images(8)) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace = {"pixels": pixels}
    try:
        exec(pixels_block, namespace)
    finally:
        sys.modules.pop("load_ticket", None)
    assert namespace["info"] == json.loads(json.dumps(metadata)) and namespace["logits"].shape == (8, 9)
    assert set(namespace["predicted"]) <= set(data.class_names)


def write_noisy_cifar10(root: Path, train: int, test: int, seed: int = 0) -> Path:
    """CIFAR-10's binary version: 5 training batches of `train` images and a test batch of `test`,
    random pixels tinted by their label (something to learn, every pixel counting)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    tints = rng.integers(0, 256, (10, 3, 1, 1))
    for name, count in [*((f"data_batch_{i}.bin", train) for i in range(1, 6)), ("test_batch.bin", test)]:
        labels = rng.integers(0, 10, count)
        planes = (rng.integers(0, 256, (count, 3, 32, 32)) + tints[labels]) // 2  # R, G and B planes, as CIFAR stores them
        (folder / name).write_bytes(np.concatenate([labels[:, None], planes.reshape(count, -1)], 1).astype(np.uint8).tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    return root


def test_raw_uint8_test_images_through_the_loaders_preprocess_score_the_rounds_accuracy(_empty_mlflow_db, tmp_path):
    """A ticket of CIFAR-10 at 16 px (the data pipeline resizes the 32 px pixels): the raw uint8 test
    images, through the shipped loader's `preprocess`, are bit for bit the images lth-sweep evaluated
    the round on, in either layout, so the ticket scores the accuracy its metadata records."""
    import importlib.util

    from lth_sweep.trainables.data import load_dataset
    from lth_sweep.trainables.specs import DataSpec, LineageSpec, ModelSpec, TrainSpec, TrunkSpec

    shutil.copyfile(_empty_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = DataSpec(name="cifar10", path=str(write_noisy_cifar10(tmp_path / "cifar", 60, 120)), image_size=16,
                    train_size=300, test_size=120, ood_size=0)
    trunk = TrunkSpec(data=data, model=ModelSpec(name="conv2", width=4), train=TrainSpec(epochs=2, batch_size=32, lr=0.01), seed=0)
    log_sweep(uri, "cifar", train_trunk(trunk), [LineageSpec(trunk=trunk, pruning={"method": "imp", "rate": 0.5, "rounds": 1})])
    folder, metadata = export_ticket(ExportRequest(tracking_uri=uri, sweep="cifar", label="imp", seed=0, round_index=1), tmp_path / "t")
    spec = importlib.util.spec_from_file_location("shipped_load_ticket", folder / "load_ticket.py")
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    model, info = loader.load(folder), loader.read_metadata(folder)
    raw = load_dataset(data.model_copy(update={"in_memory": False})).test  # the test split's own uint8 pixels
    assert isinstance(raw.items, np.ndarray) and raw.items.dtype == np.uint8 and raw.items.shape == (120, 32, 32, 3)
    evaluated = cached_dataset(data).test.images
    assert torch.equal(loader.preprocess(raw.items, info), evaluated)
    assert torch.equal(loader.preprocess(torch.from_numpy(raw.items).permute(0, 3, 1, 2), info), evaluated)
    with torch.no_grad():
        predicted = model(loader.preprocess(raw.items, info)).argmax(1)
    accuracy = (predicted == raw.labels).float().mean().item()
    assert accuracy == pytest.approx(metadata["metrics"]["test/acc"], abs=1e-6) and 0 < accuracy < 1
    assert info["input"]["preprocessing"]["to"] == "float32 (N, 3, 16, 16)"


# --- issue 31.3: a registered ticket lives in its sweep's experiment, under its lineage's run --------
def test_a_registered_ticket_is_logged_in_the_sweeps_experiment_under_its_lineage(own_store, capfd):
    """Before: the logged model went to the Default experiment (id 0), named `ticket`, the lineage
    run listed no logged model, and the version had no description."""
    from lth_sweep.export.model_registry import register_ticket

    uri, run_id = own_store
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    history = {key: len(client.get_metric_history(run_id, key)) for key in run.data.metrics}
    request = ExportRequest(tracking_uri=uri, sweep="tiny", label="imp", seed=0, round_index=2)
    registered = register_ticket(request, "tiny-imp")
    assert capfd.readouterr() == ("", "")
    assert (registered.name, registered.version, registered.model_uri, registered.run_id) == ("tiny-imp", "1", "models:/tiny-imp/1", run_id)

    model = client.get_logged_model(registered.model_id)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert model.experiment_id == run.info.experiment_id == experiment.experiment_id != "0"
    assert model.source_run_id == run_id and model.name == "imp-s0-r2" and str(model.status) == "READY"
    listed = client.search_logged_models([experiment.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    assert [m.model_id for m in listed] == [registered.model_id]
    assert registered.model_id in [output.model_id for output in client.get_run(run_id).outputs.model_outputs]
    assert client.search_logged_models(["0"]) == []  # nothing in Default

    metrics = {metric.key: metric.value for metric in model.metrics}  # the round's metrics (step 2)
    acc = [m.value for m in client.get_metric_history(run_id, "test/acc") if m.step == 2]
    assert metrics["test/acc"] == acc[-1] and "sparsity" in metrics
    assert {m.step for m in model.metrics} == {2} and all(m.run_id == run_id for m in model.metrics)
    assert {key: len(client.get_metric_history(run_id, key)) for key in run.data.metrics} == history  # not doubled

    version = client.get_model_version("tiny-imp", "1")
    assert version.run_id == run_id and version.source == f"models:/{registered.model_id}"  # SQLite keeps no model_id
    linked = json.loads(model.tags["mlflow.modelVersions"])  # what the UI links the logged model to
    assert [(link["name"], str(link["version"])) for link in linked] == [("tiny-imp", "1")]
    tags = version.tags
    lineage_id = run.data.tags["lth.id"]
    assert {k: tags[k] for k in ("lth.sweep", "lth.id", "lth.label", "lth.seed", "lth.round", "lth.method")} == {
        "lth.sweep": "tiny", "lth.id": lineage_id, "lth.label": "imp", "lth.seed": "0", "lth.round": "2", "lth.method": "imp"}
    assert tags["lth.test/acc"] == f"{acc[-1]:.4f}" and float(tags["lth.sparsity"]) > 0 and tags["lth.sweep_id"] == "tiny-id"
    assert model.tags["lth.id"] == lineage_id and model.tags["lth.round"] == "2"
    text = version.description
    for said in ("lineage imp (method imp)", "seed 0", "round 2", "Sparsity:", f"Test accuracy: {acc[-1]:.4f}",
                 "Sweep: tiny (id tiny-id", f"Lineage run: {run_id}", lineage_id):
        assert said in text, said
    se = [m.value for m in client.get_metric_history(run_id, "se/test/acc") if m.step == 2]
    if se:
        assert tags["lth.se/test/acc"] == f"{se[-1]:.4f}" and f"± {se[-1]:.4f}" in text

    assert client.get_run(run_id).info.status == run.info.status and client.get_run(run_id).info.end_time == run.info.end_time
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        loaded = mlflow.pyfunc.load_model("models:/tiny-imp/1")  # the version's files: the logged model's
    finally:
        mlflow.set_tracking_uri(None)
    shape = loaded.metadata.metadata["input"]["shape"]
    assert loaded.predict(np.zeros((2, *shape), np.float32))["logits"].shape == (2, 9)
    described = loaded.metadata.metadata["input"]  # pixels in, as the description says (the numbers: tests/sweep/test_export_sweep.py)
    assert described["range"] == [0.0, 1.0] and described["normalisation"]["how"].startswith("inside the model")
    assert "pixels in [0, 1] (the model normalises them" in text

    again = register_ticket(dataclasses_replace(request, round_index=1), "tiny-imp")  # a second version, same model
    assert again.version == "2" and client.get_logged_model(again.model_id).name == "imp-s0-r1"
    assert len(client.search_logged_models([experiment.experiment_id], filter_string=f"source_run_id = '{run_id}'")) == 2


def test_a_logged_model_name_keeps_to_what_mlflow_accepts():
    from lth_sweep.export.model_registry import logged_model_name

    assert logged_model_name({"label": "imp@12.5/x", "seed": 3, "round": 4}) == "imp@12_5_x-s3-r4"


def test_a_registered_versions_description_gives_the_sampling_error_when_logged():
    from lth_sweep.export.model_registry import description, ticket_tags

    metadata = {
        "ticket": {"label": "imp@0.2", "method": "imp", "seed": 1, "round": 5, "winning": True, "sweep": "s", "sweep_id": "sid",
                   "lineage_id": "lid", "mlflow_run_id": "rid", "mlflow_parent_run_id": "pid"},
        "sparsity": {"effective": 0.6723}, "metrics": {"test/acc": 0.91234}, "input": {"shape": [3, 32, 32]},
    }
    text = description(metadata, 0.0031, "7")
    assert "winning ticket, round 5" in text and "67.23%" in text and "0.9123 ± 0.0031 (se/test/acc" in text
    assert "Sweep: s (id sid, parent run pid, experiment 7)" in text and "Lineage run: rid (lth.id lid)" in text
    tags = ticket_tags(metadata, 0.0031)
    assert tags["lth.se/test/acc"] == "0.0031" and tags["lth.test/acc"] == "0.9123" and tags["lth.winning"] == "true"
    assert "lth.se/test/acc" not in ticket_tags(metadata) and "Test accuracy: not logged" in description({**metadata, "metrics": {}}, None, "7")
