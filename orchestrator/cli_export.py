"""`lth export`: one lineage's round as a file that runs without lth-sweep (export/).

    lth export --sweep S [--sweep-id P] --label L (--round K | --winning) --seed N
               --format safetensors|torchscript|onnx [--slim] [--out PATH [--force]] [--register NAME]
               [--tracking-uri U] [--experiment E] [--metric M]

The store is judged as `lth query` judges it (it must exist; nothing is created), and every bad
input ends with exit 2 and a message naming it. stdout gets one line naming what was written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lth_sweep.export.request import FORMATS  # a light module: `lth` starts without torch


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `export` on `lth`'s subcommands."""
    command = subparsers.add_parser(
        "export", help="write a lineage's round (or its label's winning ticket) as safetensors, TorchScript or ONNX",
        description="Write one round of one lineage as a file that runs without lth-sweep.",
    )
    command.add_argument("--sweep", required=True, help="the sweep's name (its config's `name`)")
    command.add_argument(
        "--sweep-id", metavar="ID",
        help="which sweep, when several share the name: its sweep id or parent run id, or a prefix",
    )
    command.add_argument("--label", required=True, help="the lineage's label, as `lth query` shows it (e.g. imp@125)")
    command.add_argument("--seed", type=int, required=True, help="the lineage's seed")
    which = command.add_mutually_exclusive_group(required=True)
    which.add_argument("--round", type=int, metavar="K", help="export round K")
    which.add_argument("--winning", action="store_true", help="export the label's winning ticket, as `lth tickets` judges it")
    command.add_argument(
        "--metric", help="with --winning: the metric whose ticket to export (default: Frankle & Carbin's winning-ticket rule, as `lth tickets`)"
    )
    command.add_argument("--format", choices=FORMATS, default="safetensors", dest="export_format")
    command.add_argument("--slim", action="store_true", help="filter / channel_in lineages: cut the removed channels out")
    command.add_argument("--out", type=Path, help="the folder (safetensors) or file to write (needed unless --register)")
    command.add_argument(
        "--register", metavar="NAME",
        help="also (or only) log the ticket as an ONNX model under its lineage's run and register it as a new version "
        "of MLflow's registered model NAME (loads with mlflow.onnx / mlflow.pyfunc, nothing unpickled)",
    )
    command.add_argument("--force", action="store_true", help="replace --out if it exists")
    command.add_argument("--experiment", help="MLflow experiment (default: search all)")
    command.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    command.set_defaults(run=run_export)
    return command


def run_export(args) -> int:
    from lth_sweep.orchestrator.cli import EXIT_BAD_INPUT, BadInput

    try:
        return _export(args)
    except BadInput as error:
        # Said here, not left to `main`: run as `python -m lth_sweep.orchestrator.cli`, cli.py is
        # `__main__`, whose `main` catches its own BadInput class, not the one imported above.
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT


def _export(args) -> int:
    """Judges everything it can (the request, the store, --out, the sweep, the lineage, the round)
    before torch loads (export/request.py), so that a bad input is answered in a second or two."""
    from lth_sweep.orchestrator.cli import BadInput, readable_store, stdout_to_stderr, sweep_choice_error

    if args.round is not None and args.round < 1:
        raise BadInput(f"lth: --round {args.round}: rounds count from 1")
    if args.out is None and args.register is None:
        raise BadInput("lth: export: give --out PATH (where to write the ticket), --register NAME (MLflow's model registry), or both")
    uri = readable_store(args)
    from lth_sweep.analysis.query import SweepAmbiguous, SweepNotFound
    from lth_sweep.export.errors import ExportError
    from lth_sweep.export.export import export_ticket
    from lth_sweep.export.request import ExportRequest

    try:
        request = ExportRequest(
            tracking_uri=uri, sweep=args.sweep, label=args.label, seed=args.seed, round_index=args.round,
            export_format=args.export_format, slim=args.slim, sweep_id=args.sweep_id, experiment=args.experiment,
            metric=args.metric,
        )
        with stdout_to_stderr():  # stdout holds only the lines saying what was written
            if args.out is not None:
                path, metadata = export_ticket(request, args.out, force=args.force)
            if args.register is not None:
                from lth_sweep.export.model_registry import register_ticket

                registered = register_ticket(request, args.register)
    except (SweepAmbiguous, SweepNotFound) as error:
        raise sweep_choice_error(error, uri) from None
    except ExportError as error:
        raise BadInput(f"lth: export: {error}") from None
    if args.out is not None:
        ticket = metadata["ticket"]
        kind = "winning ticket, round" if ticket["winning"] else "round"
        slim = metadata["slim"]
        slim = f", slim {slim['parameters_before']:,} -> {slim['parameters_after']:,} parameters" if slim else ""
        print(f"wrote {path} ({args.export_format}: {ticket['label']} seed {ticket['seed']}, {kind} {ticket['round']}{slim})", flush=True)
    if args.register is not None:
        print(f"registered {registered.model_uri} (ONNX; source run {registered.run_id})", flush=True)
    return 0
