"""`lth export`: one round of one lineage, from the tracking store to a file that runs without
lth-sweep. Find the lineage (sweep, label, seed), pick the round (K, or the label's winning round
as `lth tickets` judges it), download its weights and masks, rebuild the network from the
lineage's spec, optionally cut its dead channels out (`--slim`), and write one format, checked,
in one rename.

The request, the destination and the round are judged first (request.py, output.py), with nothing
heavier than pandas loaded: torch, MLflow's client and the formats are imported by the functions
that use them, torch-pruning only for --slim.

`export_onnx_model` is the same up to the ONNX model in memory, for callers that store it
elsewhere (an MLflow model registry).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lth_sweep.export.lineage_run import LineageRun
from lth_sweep.export.output import check_destination, check_folder_name, staged
from lth_sweep.export.request import ChosenRound, ExportRequest, check_slim, choose_round

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lth_sweep.export.network import Architecture
    from lth_sweep.trainables.data import Dataset

log = logging.getLogger(__name__)


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
    from lth_sweep.export import formats
    from lth_sweep.export.metadata import ticket_metadata
    from lth_sweep.export.network import architecture_of, dataset_of, example_images, parameter_count, rebuilt, trunk_spec_of

    check_slim(lineage, slim)
    spec = trunk_spec_of(lineage.params, lineage.trunk_id)
    dataset = dataset if dataset is not None else dataset_of(spec)
    architecture = architecture_of(spec, dataset)
    model = rebuilt(spec, dataset, weights, masks)
    images = example_images(dataset)
    slim_report = None
    if slim:
        from lth_sweep.export.slim import slimmed

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


def prepare_chosen(request: ExportRequest, chosen: ChosenRound) -> PreparedTicket:
    """The chosen round downloaded and rebuilt."""
    from mlflow.tracking import MlflowClient

    from lth_sweep.export.round_tensors import round_tensors

    weights, masks = round_tensors(MlflowClient(request.tracking_uri), chosen.lineage, chosen.round_index)
    return prepare(chosen.lineage, chosen.round_index, chosen.winning, weights, masks,
                   export_format=request.export_format, slim=request.slim)


def prepare_request(request: ExportRequest) -> PreparedTicket:
    """Everything up to writing: the lineage found, its round chosen, downloaded and rebuilt."""
    return prepare_chosen(request, choose_round(request))


def write(ticket: PreparedTicket, out: Path, force: bool) -> Path:
    """Writes `ticket` in its metadata's format at `out` (a folder for safetensors, else a file)."""
    from lth_sweep.export import formats

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
    if request.export_format == "safetensors":
        check_folder_name(out)
    check_destination(out.absolute(), force)
    ticket = prepare_request(request)
    return write(ticket, out, force), ticket.metadata


def export_onnx_model(request: ExportRequest, pixels: bool = False):
    """(onnx.ModelProto, metadata) of the ticket `request` names, in memory, checked with
    onnxruntime; the metadata is also in the model's metadata_props (`lth.ticket`, JSON).
    `pixels`: the model takes pixels in [0, 1] and normalises them itself (`pixel_input.py`)."""
    from lth_sweep.export import formats
    from lth_sweep.export.pixel_input import taking_pixels

    if request.export_format != "onnx":
        request = ExportRequest(**{**request.__dict__, "export_format": "onnx"})
    ticket = prepare_request(request)
    if not pixels:
        return formats.export_onnx_proto(ticket.model, ticket.metadata, ticket.images), ticket.metadata
    model, metadata = taking_pixels(ticket.model, ticket.metadata)
    return formats.export_onnx_proto(model, metadata, model.pixels_of(ticket.images)), metadata
