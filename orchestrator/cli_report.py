"""`lth report SWEEP`: the sweep as one page to share (`orchestrator/report.py`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `report` on `lth`'s subcommands."""
    command = subparsers.add_parser(
        "report", help="write a sweep's report: one self-contained report.html, and report.md with its figures",
        description="Write a sweep's report into --out: report.html (self-contained: figures inline, nothing fetched) "
        "and report.md with its figures beside it. It holds the sweep's config and provenance, its MLflow run, its "
        "figures, the summary and the verdicts recomputed from the record, and its registered tickets; it is also "
        "logged to the sweep's parent run under report/.",
    )
    command.add_argument("sweep", metavar="SWEEP", help="the sweep's name (its config's `name`)")
    command.add_argument(
        "--sweep-id", metavar="ID",
        help="which sweep, when several share the name (different configs): its sweep id or parent run id, or a prefix",
    )
    command.add_argument("--experiment", help="MLflow experiment (default: search all)")
    command.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    command.add_argument("--out", type=Path, metavar="FOLDER", help="where to write it (default: ./SWEEP-report/)")
    command.add_argument("--force", action="store_true", help="replace the report --out holds")
    command.set_defaults(run=_report)
    return command


def _report(args) -> int:
    from lth_sweep.orchestrator.report import ReportRefused, check_out, default_out, log_report, write_report

    out = args.out or default_out(args.sweep)
    try:  # before reading the sweep: a refusal is told at once
        check_out(out, args.force)
    except ReportRefused as error:
        print(f"lth report: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    facts = _facts(args)
    try:
        report = write_report(facts, out, args.force)
    except ReportRefused as error:  # --out changed while the sweep was read
        print(f"lth report: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # a full disk: the staged report is gone, --out untouched
        print(f"lth report: cannot write {out}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(report.html)
    print(report.markdown)
    from mlflow.exceptions import MlflowException

    try:
        log_report(facts, report)
    except (MlflowException, OSError) as error:
        print(f"lth report: written, but not logged to the parent run {facts.parent_id}: {error}", file=sys.stderr)
        return 1
    print(f"lth report: logged to the parent run {facts.parent_id} under report/", file=sys.stderr)
    return 0


def _facts(args):
    """The sweep's facts; BadInput (exit 2, one line) for a bad store or sweep, as `lth query`."""
    from lth_sweep.analysis.query import SweepAmbiguous, SweepNotFound, read_sweep
    from lth_sweep.orchestrator.cli import BadInput, readable_store, stdout_to_stderr, sweep_choice_error
    from lth_sweep.orchestrator.report_record import read_facts

    uri = readable_store(args)
    try:
        with stdout_to_stderr():  # stdout holds only the report's paths
            sweep = read_sweep(args.sweep, uri, args.experiment, latest=False, sweep_id=args.sweep_id)
    except (SweepAmbiguous, SweepNotFound) as error:
        raise sweep_choice_error(error, uri) from None
    if sweep.parent is None:
        raise BadInput(f"lth: sweep {args.sweep!r} has no parent run in {uri}: its record is incomplete")
    with stdout_to_stderr():
        return read_facts(sweep, uri)
