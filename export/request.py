"""What to export, judged before anything heavy loads: the request itself, then the sweep, the
lineage and the round, read from the tracking store (analysis.query: SQL and pandas, no torch).
Every bad choice `lth export` can be given is refused here, in a second or two; torch, MLflow's
client and the formats load only for a ticket known to exist (export.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from lth_sweep.export.errors import ExportError
from lth_sweep.export.lineage_run import LineageRun, checked_round, find_lineage, read_record, winning_round

FORMATS = ("safetensors", "torchscript", "onnx")
SLIM_METHODS = ("filter", "channel_in")  #: the methods that remove whole channels, which --slim cuts out


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
        if self.export_format not in FORMATS:
            raise ExportError(f"unknown export format {self.export_format!r}; known: {', '.join(FORMATS)}")
        if self.round_index is not None and self.round_index < 1:
            raise ExportError(f"round {self.round_index}: rounds count from 1")


@dataclass(frozen=True)
class ChosenRound:
    lineage: LineageRun
    round_index: int
    winning: bool


def check_slim(lineage: LineageRun, slim: bool) -> None:
    if slim and lineage.method not in SLIM_METHODS:
        raise ExportError(
            f"--slim cuts whole channels out of the network, which only {' and '.join(SLIM_METHODS)} lineages remove; "
            f"lineage {lineage.label} prunes with {lineage.method!r}, single weights, so nothing would be cut out"
        )


def choose_round(request: ExportRequest) -> ChosenRound:
    """The lineage and round `request` names; ExportError (or analysis.query's SweepNotFound /
    SweepAmbiguous) naming what is wrong."""
    sweep_record = read_record(request.tracking_uri, request.sweep, request.sweep_id, request.experiment)
    lineage = find_lineage(sweep_record, request.sweep, request.label, request.seed)
    check_slim(lineage, request.slim)
    winning = request.round_index is None
    round_index = winning_round(sweep_record, request.label, request.metric, request.seed) if winning else request.round_index
    return ChosenRound(lineage, checked_round(lineage, round_index), winning)
