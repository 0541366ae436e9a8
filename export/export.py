"""`lth export`: one round of one lineage, from the tracking store to a file that runs without
lth-sweep. Find the lineage (sweep, label, seed), pick the round (K, or the label's winning round
as `lth tickets` judges it), download its weights and masks, rebuild the network from the
lineage's spec, optionally cut its dead channels out (`--slim`), and write one format, checked,
in one rename.

`export_onnx_model` is the same up to the ONNX model in memory, for callers that store it
elsewhere (an MLflow model registry).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from torch import nn

from lth_sweep.trainables.data import Dataset
from lth_sweep.export import formats
from lth_sweep.export.errors import ExportError
from lth_sweep.export.lineage_run import LineageRun, checked_round, find_lineage, read_record, winning_round
from lth_sweep.export.metadata import ticket_metadata
from lth_sweep.export.network import Architecture, architecture_of, dataset_of, example_images, rebuilt, trunk_spec_of
from lth_sweep.export.output import check_destination, staged
from lth_sweep.export.round_tensors import round_tensors
from lth_sweep.export.slim import SLIM_METHODS, parameter_count, slimmed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportRequest:
    """Which ticket, in which form. `round_index` None: the label's winning round (on `metric` if given)."""

    tracking_uri: str
    sweep: str
    label: str
    seed: int
    round_index: int | None = None
    export_format: str = "safetensors"
    slim: bool = False
    sweep_id: str | None = None
    experiment: str | None = None
    metric: str | None = None  # with round_index None: None is the winning-ticket rule, else this metric's ticket

    def __post_init__(self):
        if self.export_format not in formats.FORMATS:
            raise ExportError(f"unknown export format {self.export_format!r}; known: {', '.join(formats.FORMATS)}")


@dataclass
class PreparedTicket:
    """The network to write (masked, or slim), what it is, and the images it is checked on."""

    model: nn.Module
    architecture: Architecture
    metadata: dict
    images: torch.Tensor


def prepare(
    lineage: LineageRun, round_index: int, winning: bool, weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
    *, export_format: str, slim: bool, dataset: Dataset | None = None,
) -> PreparedTicket:
    """The round's network rebuilt from the lineage's spec (`dataset`: its data, loaded from the
    spec when not given), slimmed when asked."""
    if slim and lineage.method not in SLIM_METHODS:
        raise ExportError(
            f"--slim cuts whole channels out of the network, which only {' and '.join(SLIM_METHODS)} lineages remove; "
            f"lineage {lineage.label} prunes with {lineage.method!r}, single weights, so nothing would be cut out"
        )
    spec = trunk_spec_of(lineage.params, lineage.trunk_id)
    dataset = dataset if dataset is not None else dataset_of(spec)
    architecture = architecture_of(spec, dataset)
    model = rebuilt(spec, dataset, weights, masks)
    images = example_images(dataset)
    slim_report = None
    if slim:
        classifier = model.prunable_weights()[-1].removesuffix(".weight")
        model, report = slimmed(model, images, classifier)
        slim_report = report.as_metadata()
        log.info("slim: %d -> %d parameters", report.parameters_before, report.parameters_after)
    metadata = ticket_metadata(
        lineage=lineage, round_index=round_index, winning=winning, architecture=architecture, dataset=dataset,
        parameters=parameter_count(model), slim=slim_report, export_format=export_format,
    )
    if export_format == "safetensors":
        metadata["architecture"] = formats.SAFETENSORS_ARCHITECTURE
    return PreparedTicket(model, architecture, metadata, images)


def prepare_request(request: ExportRequest) -> PreparedTicket:
    """Everything up to writing: the lineage found, its round chosen, downloaded and rebuilt."""
    sweep_record = read_record(request.tracking_uri, request.sweep, request.sweep_id, request.experiment)
    lineage = find_lineage(sweep_record, request.sweep, request.label, request.seed)
    winning = request.round_index is None
    round_index = winning_round(sweep_record, request.label, request.metric, request.seed) if winning else request.round_index
    checked_round(lineage, round_index)
    weights, masks = round_tensors(MlflowClient(request.tracking_uri), lineage, round_index)
    return prepare(lineage, round_index, winning, weights, masks, export_format=request.export_format, slim=request.slim)


def write(ticket: PreparedTicket, out: Path, force: bool) -> Path:
    """Writes `ticket` in its metadata's format at `out` (a folder for safetensors, else a file)."""
    export_format = ticket.metadata["export_format"]
    with staged(out, force, directory=export_format == "safetensors") as target:
        if export_format == "safetensors":
            formats.write_safetensors(ticket.model, ticket.architecture.cls, ticket.metadata, ticket.images, target)
        elif export_format == "torchscript":
            formats.write_torchscript(ticket.model, ticket.metadata, ticket.images, target)
        else:
            formats.write_onnx(ticket.model, ticket.metadata, ticket.images, target)
    return Path(out).absolute()


def export_ticket(request: ExportRequest, out: str | Path, force: bool = False) -> tuple[Path, dict]:
    """Writes the ticket `request` names at `out`; returns the path written and its metadata.
    ExportError (and analysis.query's SweepNotFound / SweepAmbiguous) name what is wrong; an
    existing `out` is refused before any work unless `force`."""
    out = Path(out)
    check_destination(out.absolute(), force)
    ticket = prepare_request(request)
    return write(ticket, out, force), ticket.metadata


def export_onnx_model(request: ExportRequest):
    """(onnx.ModelProto, metadata) of the ticket `request` names, in memory, checked with
    onnxruntime; the metadata is also in the model's metadata_props (`lth.ticket`, JSON)."""
    if request.export_format != "onnx":
        request = ExportRequest(**{**request.__dict__, "export_format": "onnx"})
    ticket = prepare_request(request)
    return formats.export_onnx_proto(ticket.model, ticket.metadata, ticket.images), ticket.metadata
