"""`lth`: sweep, ui. Hyperparameters live in the pydantic config, so the CLI stays thin."""
from __future__ import annotations

import argparse
import contextlib
import difflib
import errno
import fnmatch
import gc
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from lth_sweep.orchestrator.config_errors import ConfigError
from lth_sweep.orchestrator.tracking_store import plain_sqlite_uri, resolve_uri

EXIT_BAD_INPUT = 2
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for `cat file | head`


@contextlib.contextmanager
def stdout_to_stderr():
    """Everything written to stdout meanwhile (Tune's and Ray's prints, from this process or the
    processes it starts) goes to stderr, at the file-descriptor level."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


class BadInput(Exception):
    """A reading command's input is wrong (no such sweep, a bad --where): `main` prints the
    message, which names the problem, and exits 2."""


def _sweep(args) -> int:
    from lth_sweep.orchestrator.config import load_config

    machine = None
    if args.machine:
        from lth_sweep.orchestrator.estimate import Machine

        try:
            if not args.dry_run:
                raise ValueError("--machine describes where a dry run estimates the wall time: add --dry-run")
            machine = Machine.parse(args.machine)
        except ValueError as error:
            print(f"lth: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT

    try:
        config = load_config(args.config, [*(args.set or []), *(["tracking.rerun_stale=true"] if args.rerun_stale else [])])
        from lth_sweep.orchestrator.plan import make_plan

        plan = make_plan(config, check_paths=not args.dry_run)  # a dry run plans where the data is not
    except ConfigError as error:
        where = args.config or "the quickstart config"
        print(f"lth: invalid config {where}:\n  " + str(error).replace("\n", "\n  "), file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.like and not args.dry_run:
        print("lth: --like states a planned sweep's power in a dry run: add --dry-run", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.dry_run:
        print(plan.describe(machine))
        from lth_sweep.orchestrator.mlflow_runs import stored_progress

        print(stored_progress(config.tracking.resolved_uri(Path.cwd()), config.tracking.experiment, config.name,
                              plan.sweep_id, len(plan.lineages)))
        return _power_of_plan(args, len(config.seeds)) if args.like else 0
    from lth_sweep.orchestrator.tracking_store import TrackingUnavailable
    from lth_sweep.orchestrator.preflight import BadStore, check_sweep_stores

    try:  # before importing Ray, Tune and torch (seconds), writing nothing: storage and tracking store
        check_sweep_stores(config, Path.cwd())
    except BadStore as error:
        print(f"lth: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from lth_sweep.orchestrator.interrupt import SweepInterrupted
    from lth_sweep.orchestrator.lease import SweepBusy
    from lth_sweep.orchestrator.progress import Console
    from lth_sweep.orchestrator.ray_session import ClusterTooSmall, RayUnreachable
    from lth_sweep.orchestrator.summary import render
    from lth_sweep.orchestrator.sweep import run_sweep

    # MLflow announces creating its SQLite tables at INFO; the sweep's own log already says where.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    console = Console()
    try:
        with stdout_to_stderr():  # only the summary reaches stdout (`--format json` stays parseable)
            outcome = run_sweep(plan, address=args.address, console=console, check_store=False, wait=args.wait)
    except (RayUnreachable, TrackingUnavailable, ClusterTooSmall, SweepBusy) as error:
        print(f"lth: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SweepInterrupted as interrupted:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            console.say(str(interrupted))
        return interrupted.exit_code
    print(render(outcome.rows, args.format, outcome.indistinct), flush=True)
    if outcome.stale:
        console.say(
            f"reused {len(outcome.stale)} finished run(s) made by another lth-sweep version: "
            + "; ".join(stale.describe() for stale in outcome.stale)
            + ". Run the same command with --rerun-stale to train them again"
        )
    if args.format == "table":
        plots = ", ".join(path.name for path in outcome.plots)
        console.say(f"sweep {outcome.status.lower()}; plots: {outcome.plots[0].parent}/ ({plots})")
        serve = "" if outcome.tracking_uri.startswith(("http://", "https://")) else f"run `lth ui` (store {outcome.tracking_uri}), then "
        console.say(f"MLflow UI: {serve}open {outcome.parent_url}")
        console.say(f"methods compared (lineages grouped by method; README, \"Comparing runs\"): {outcome.comparison_url}")
    return 0 if outcome.succeeded else 1


def ui_store(config: str | None, backend_store_uri: str | None) -> str:
    """The store `lth ui` shows: --backend-store-uri, else the config's `tracking.uri`, else
    $MLFLOW_TRACKING_URI, else ./mlflow.db. Raises ConfigError for a bad config."""
    if backend_store_uri is not None:
        return plain_sqlite_uri(backend_store_uri)
    if config is not None:
        from lth_sweep.orchestrator.config import load_config

        return load_config(config).tracking.resolved_uri(Path.cwd())
    return resolve_uri(None, Path.cwd())


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """The `mlflow ui` command line that serves `uri`."""
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    # One worker: MLflow's default (4 uvicorn workers) costs ~1 GB, and uvicorn with several workers
    # delays every request on a kept-alive connection by ~40 ms (uvicorn issue #3149; bench/RESULTS.md).
    return [mlflow, "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port), "--workers", "1"]


def _ui(args) -> int:
    if args.config and args.config_option and args.config != args.config_option:
        print(f"lth ui: two configs given ({args.config}, --config {args.config_option}); give one", file=sys.stderr)
        return EXIT_BAD_INPUT
    config = args.config or args.config_option
    try:
        uri = ui_store(config, args.backend_store_uri)
    except ConfigError as error:
        print(f"lth: invalid config {config}:\n  " + str(error).replace("\n", "\n  "), file=sys.stderr)
        return EXIT_BAD_INPUT
    if uri.startswith(("http://", "https://")):  # a tracking server serves its own UI: no second one
        print("lth: the tracking store is an MLflow server; its UI is at:", file=sys.stderr)
        print(uri)
        return 0
    from lth_sweep.orchestrator.tracking_store import TrackingUnavailable, check_tracking

    try:  # what `mlflow ui` would fail on after creating the store (or never tell: a port in use)
        check_tracking(uri, source=ui_source(config, args.backend_store_uri))
        check_port_free(args.host, args.port)
    except (TrackingUnavailable, PortUnavailable) as error:
        print(f"lth: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"lth: MLflow UI on http://{args.host}:{args.port} (store {uri})", file=sys.stderr)
    # MLflow 3's UI starts GenAI job workers (~2 GB) that lth-sweep never uses.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    return subprocess.call(ui_command(uri, args.host, args.port), env=env)


def ui_source(config: str | None, backend_store_uri: str | None) -> str:
    """Where `lth ui`'s store came from, as the user would change it."""
    from lth_sweep.orchestrator.preflight import tracking_source

    if backend_store_uri is not None:
        return "--backend-store-uri"
    return f"tracking.uri of {config}" if config else tracking_source(None, "--backend-store-uri")


class PortUnavailable(Exception):
    """`lth ui` cannot listen where it is asked to."""


def check_port_free(host: str, port: int) -> None:
    """`mlflow ui` on a port in use prints its error among its logs and `lth ui` would have
    announced a UI that is not there: the port is bound (and released) first. SO_REUSEADDR, as
    uvicorn binds: a port left in TIME_WAIT is free to it."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        reason = "in use" if error.errno == errno.EADDRINUSE else f"not usable ({error.strerror or error})"
        raise PortUnavailable(f"port {port} on {host} is {reason}; give another with --port") from None


def port_number(text: str) -> int:
    """argparse's type of --port: a TCP port, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return port


def readable_store(args) -> str:
    """The tracking URI of `--tracking-uri` (else the default), checked readable; BadInput if not."""
    from lth_sweep.orchestrator.preflight import BadStore, check_reading_store, tracking_source

    uri = plain_sqlite_uri(args.tracking_uri) if args.tracking_uri else resolve_uri(None, Path.cwd())
    try:  # in seconds, writing nothing: MLflow's client would create a missing store, retry a server for minutes
        check_reading_store(uri, tracking_source(args.tracking_uri, "--tracking-uri"))
    except BadStore as error:
        raise BadInput(f"lth: {error}") from None
    return uri


def sweep_choice_error(error, uri: str) -> BadInput:
    """What the user reads when `--sweep` (and `--sweep-id`) names no sweep, or several."""
    from lth_sweep.analysis.query import SweepAmbiguous

    if isinstance(error, SweepAmbiguous):
        return BadInput(
            f"lth: {error.head} (tracking store {uri}); pick one with --sweep-id "
            f"(its sweep id or parent run id; a prefix will do):\n{error.table}"
        )
    table = getattr(error, "table", "")  # with --sweep-id: the sweeps of that name
    head = f"lth: {getattr(error, 'head', error)} (tracking store {uri})"
    return BadInput(f"{head}; the sweeps of that name:\n{table}" if table else head)


def _frame(args):
    """The sweep's tidy table; raises BadInput naming what is wrong."""
    uri = readable_store(args)
    from lth_sweep.analysis.query import SweepAmbiguous, SweepNotFound, load_sweep

    try:  # several sweeps of one name: the user picks one (the library's default is the latest)
        with stdout_to_stderr():  # stdout holds only the table (`--format json|csv` stays parseable)
            frame = load_sweep(args.sweep, uri, args.experiment, latest=False, sweep_id=args.sweep_id)
    except (SweepAmbiguous, SweepNotFound) as error:
        raise sweep_choice_error(error, uri) from None
    return rows_where(frame, args.where) if args.where else frame


def _no_column(name: str, columns, where: bool) -> str:
    close = difflib.get_close_matches(name, list(columns), n=3)
    if close:
        return f"no column {name!r} (did you mean {' or '.join(f'`{c}`' if where else c for c in close)}?)"
    if where:
        return f"no column {name!r} (a text value goes in quotes: label == 'imp')"
    return f"no column {name!r} (`lth query --format csv | head -1` lists them all)"


def with_backticks(where: str, columns) -> str:
    """`where` with every column whose name has a slash or a dot in backticks (pandas reads
    `test/acc` as test divided by acc, `pruning.rate` as an attribute of `pruning`)."""
    for column in sorted((c for c in columns if "/" in c or "." in c), key=len, reverse=True):
        where = re.sub(rf"(?<![\w/.`'\"]){re.escape(column)}(?![\w/.`'\"])", f"`{column}`", where)
    return where


def _shell_quoted(text: str) -> str:
    """`text` as one shell word in which the backticks stay backticks (within double quotes a
    shell would run them as a command)."""
    if "'" not in text:
        return f"'{text}'"
    return '"' + re.sub(r'([`"$\\])', r"\\\1", text) + '"'


def rows_where(frame, where: str):
    """The rows of `frame` that the pandas expression `where` keeps; BadInput (one line) naming
    what is wrong: a column name without its backticks, a column that is not there, bad syntax."""
    from pandas.errors import UndefinedVariableError

    said = f"lth: --where {where!r}"
    unknown = [name for name in re.findall(r"`([^`]*)`", where) if name not in frame.columns]
    if unknown:
        raise BadInput(f"{said}: {_no_column(unknown[0], frame.columns, where=True)}")
    try:
        return frame.query(where, engine="python")
    except UndefinedVariableError as error:
        quoted = with_backticks(where, frame.columns)
        if quoted != where:
            said += f": column names with a slash or a dot go in backticks: --where {_shell_quoted(quoted)}"
            raise BadInput(said) from None
        name = re.search(r"name '(.*)' is not defined", str(error))
        if name is None:
            raise BadInput(f"{said}: {error}") from None
        token = re.search(rf"(?<![\w`]){re.escape(name.group(1))}[\w/.]*", where)  # `tset` of tset/acc: tset/acc
        raise BadInput(f"{said}: {_no_column(token.group(0) if token else name.group(1), frame.columns, where=True)}") from None
    except Exception as error:  # pandas raises many kinds for a bad expression
        raise BadInput(f"{said}: {type(error).__name__}: {' '.join(str(error).split())}") from None


def _emit(frame, fmt: str) -> None:
    if fmt == "json":
        print(frame.to_json(orient="records", indent=2, double_precision=15))
    elif fmt == "csv":
        print(frame.to_csv(index=False), end="")
    else:
        with pd_options():
            print(frame.to_string(index=False))
    sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit


def pd_options():
    import pandas as pd

    return pd.option_context("display.max_columns", None, "display.width", 200, "display.max_rows", None)


def table_columns(frame) -> list[str]:
    """The default table's columns: the trunk configuration (where the sweep has several), label,
    seed, round, sparsity, and the headline metric of each dimension measured (those `lth tickets`
    judges by default: test/acc first)."""
    from lth_sweep.analysis.metrics import judged_by_default

    shown = [c for c in ("label", "seed", "round", "sparsity") if c in frame.columns]
    if "config" in frame.columns and frame["config"].nunique() > 1:
        shown.insert(0, "config")
    for pattern in judged_by_default():
        shown += sorted(c for c in frame.columns if fnmatch.fnmatchcase(c, pattern) and "/class/" not in c and c not in shown)
    return shown


def _query(args) -> int:
    frame = _frame(args)
    if args.where and frame.empty:
        print(f"lth: no rows match --where {args.where!r}", file=sys.stderr)
    hidden = 0
    if args.columns:
        missing = [c for c in args.columns if c not in frame.columns]
        if missing:
            print(f"lth: --columns: {'; '.join(_no_column(c, frame.columns, where=False) for c in missing)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        frame = frame[args.columns]
    elif args.format == "table" and len(frame.columns):  # csv and json: every column
        shown = table_columns(frame)
        hidden = len(frame.columns) - len(shown)
        frame = frame[shown]
    try:
        _emit(frame, args.format)
    except BrokenPipeError:  # `lth query | head`: the reader has what it wanted
        return _stdout_closed()
    if hidden:
        print(f"lth: {hidden} more columns (config fields, every metric, dense values): --columns NAME... shows any of them, "
              "--format csv or json gives them all", file=sys.stderr)
    return 0


def _stdout_closed() -> int:
    """After stdout's reader went away: stdout pointed at devnull, so that Python's own flush at
    exit finds nowhere to fail (the way Python's documentation of SIGPIPE recommends), and 141,
    the status of a program that SIGPIPE ended (`cat file | head`), so that `set -o pipefail`
    treats lth as it treats cat."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_PIPE_CLOSED


def parse_margins(values: list[str], metrics: list[str]) -> dict[str, float]:
    """`--margin 0.01` (every metric) or `--margin test/acc=0.01` (one; `winning=` for the
    winning-ticket rule), repeatable. A metric that is not among `metrics` (those judged, patterns
    such as `xai/concept_jaccard_top*` included) is refused: its margin would be silently unused."""
    from lth_sweep.analysis.sweep_verdicts import WINNING

    out: dict[str, float] = {}
    for value in values:
        name, _, number = value.rpartition("=")
        try:
            margin = float(number)
        except ValueError:
            raise ValueError(f"{value!r} is not NUMBER or METRIC=NUMBER") from None
        if not margin >= 0 or margin == float("inf"):
            raise ValueError(f"{value!r}: a margin is a finite number >= 0")
        if name == "winning":
            name = WINNING
        if name and not any(fnmatch.fnmatchcase(name, judged) for judged in metrics):
            raise ValueError(f"{value}: {_not_judged(name, metrics, WINNING)}")
        out |= {name: margin} if name else {metric: margin for metric in metrics}
    return out


def _not_judged(name: str, metrics: list[str], winning: str) -> str:
    from lth_sweep.analysis.metrics import known

    if known(name):
        hint = f" (add --metric {name} to judge it)"
    else:
        close = difflib.get_close_matches(name, metrics, n=1)
        hint = f" (did you mean {close[0]}?)" if close else " (no such metric in the registry, analysis/metrics.py)"
    judged = ", ".join("winning" if metric == winning else metric for metric in metrics)
    return f"{name!r} is not judged{hint}; judged: {judged}"


def _tickets(args) -> int:
    from lth_sweep.analysis import paper_table, strict_json
    from lth_sweep.analysis.sweep_verdicts import DEFAULT_METRICS, WINNING, PooledLineages, judge
    from lth_sweep.analysis.sweep_verdicts_render import render

    metrics = args.metric or list(DEFAULT_METRICS)
    try:  # before reading the sweep: a typo is told at once
        margin = parse_margins(args.margin or [], [*metrics, WINNING])
    except ValueError as error:
        print(f"lth: --margin/--tolerance {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    frame = _frame(args)
    if frame.empty:
        print(f"lth: sweep {args.sweep!r} has no finished rounds yet", file=sys.stderr)
        return EXIT_BAD_INPUT
    unknown = [m for m in metrics if m not in frame.columns]
    if args.metric and unknown:
        said = "; ".join(_no_column(m, [c for c in frame.columns if "/" in c], where=False) for m in unknown)
        print(f"lth: --metric: not measured in this sweep: {said}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from lth_sweep.analysis.metrics import known

    unregistered = [m for m in metrics if not known(m)]
    if unregistered:
        print(f"lth: --metric: no such metric in the registry (analysis/metrics.py): {unregistered}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        result = judge(frame, metrics, margin=margin, relative=args.relative)
    except PooledLineages as error:
        print(f"lth: sweep {args.sweep!r}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    text = {
        "json": lambda: strict_json.dumps(result, indent=2) + "\n", "csv": lambda: paper_table.csv_text(result),
        "markdown": lambda: paper_table.markdown(result) + "\n", "latex": lambda: paper_table.latex(result) + "\n",
    }.get(args.format, lambda: render(result) + "\n")()
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `lth tickets | head`
        return _stdout_closed()
    return 0


def _power_of_plan(args, seeds: int) -> int:
    """The dry run's power statement, from the finished sweep `--like` names."""
    from lth_sweep.analysis.query import SweepAmbiguous, SweepNotFound, load_sweep
    from lth_sweep.analysis.sweep_verdicts import DEFAULT_METRICS, judge
    from lth_sweep.orchestrator.power_plan import power_lines

    uri = readable_store(argparse.Namespace(tracking_uri=args.like_tracking_uri))
    try:
        with stdout_to_stderr():
            frame = load_sweep(args.like, uri)
    except (SweepAmbiguous, SweepNotFound) as error:
        raise sweep_choice_error(error, uri) from None
    if frame.empty:
        print(f"lth: --like: sweep {args.like!r} has no finished rounds", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("\n".join(["", *power_lines(seeds, judge(frame, list(DEFAULT_METRICS)), args.like)]))
    return 0


def _add_sweep_selector(command, formats=("table", "json", "csv")) -> None:
    command.add_argument("--sweep", required=True, help="the sweep's name (its config's `name`)")
    command.add_argument(
        "--sweep-id", metavar="ID",
        help="which sweep, when several share the name (different configs): its sweep id or parent run id, or a prefix",
    )
    command.add_argument("--experiment", help="MLflow experiment (default: search all)")
    command.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    command.add_argument("--where", help="pandas query over the columns, e.g. 'method == \"imp\" and `test/acc` > 0.9' (names with / or . in backticks)")
    command.add_argument("--format", choices=list(formats), default="table")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lth-sweep")
    except PackageNotFoundError:  # run from a checkout that pip never installed
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lth", description="Lottery Ticket sweeps on Ray Tune, tracked in MLflow")
    top.add_argument("--version", action="version", version=f"lth-sweep {_version()}")
    commands = top.add_subparsers(dest="command", required=True)

    sweep = commands.add_parser("sweep", help="run (or resume) a sweep")
    sweep.add_argument("config", nargs="?", help="sweep YAML (default: the built-in quickstart)")
    sweep.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. train.epochs=2")
    sweep.add_argument("--address", help="join an existing Ray cluster (default: start a local Ray)")
    sweep.add_argument("--dry-run", action="store_true", help="validate and print the plan, then exit")
    sweep.add_argument(
        "--wait", action="store_true",
        help="while another driver runs this sweep on the store, wait for it to end, then continue (default: exit 2)",
    )
    sweep.add_argument(
        "--machine", metavar="CPUS[:GPUS]",
        help="with --dry-run: estimate the wall time on a machine with these CPUs and GPUs, e.g. 16:1 (default: this one)",
    )
    sweep.add_argument(
        "--like", metavar="SWEEP",
        help="with --dry-run: what this sweep's seeds can detect, from the noise between seeds of this finished sweep",
    )
    sweep.add_argument("--like-tracking-uri", help="the store of --like's sweep (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    # Every run resumes (finished trunks and lineages are never redone): the flag is accepted for
    # scripts written against DESIGN.md's CLI contract and changes nothing, so help leaves it out.
    sweep.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    sweep.add_argument("--format", choices=["table", "json", "csv"], default="table", help="summary format")
    sweep.add_argument(
        "--rerun-stale", action="store_true",
        help="train again the finished trunks and lineages another lth-sweep version made (their runs are deleted, "
        "restorable in MLflow's UI); the same as --set tracking.rerun_stale=true",
    )
    sweep.set_defaults(run=_sweep)

    query = commands.add_parser("query", help="one row per (lineage, round) of a sweep, from MLflow")
    _add_sweep_selector(query)
    query.add_argument("--columns", nargs="+", help="only these columns")
    query.set_defaults(run=_query)

    tickets = commands.add_parser("tickets", help="winning tickets and LTH-PASS per method, with confidence intervals")
    _add_sweep_selector(tickets, formats=("table", "json", "csv", "markdown", "latex"))
    tickets.add_argument("--metric", action="append", help="judge on this metric (repeatable; default: one per dimension)")
    tickets.add_argument(
        "--margin", "--tolerance", dest="margin", action="append", metavar="[METRIC=]NUMBER",
        help="how much worse than dense still counts as matching, fixed before looking at the data, for every metric or "
        "one (repeatable; METRIC may be 'winning' for the winning-ticket rule); default: the registry's per-metric margin",
    )
    tickets.add_argument("--relative", action="store_true", help="--margin as a fraction of the dense value")
    tickets.set_defaults(run=_tickets)
    from lth_sweep.orchestrator.cli_export import add_parser as add_export_parser
    add_export_parser(commands)
    from lth_sweep.orchestrator.cli_store import add_parser as add_store_parser
    add_store_parser(commands)
    from lth_sweep.orchestrator.cli_report import add_parser as add_report_parser
    add_report_parser(commands)

    ui = commands.add_parser(
        "ui", help="open the MLflow UI on the sweep's tracking store (an MLflow server: print its URL)"
    )
    ui.add_argument("config", nargs="?", help="a sweep YAML: show its `tracking.uri`")
    ui.add_argument("--config", dest="config_option", metavar="CONFIG", help="the same as CONFIG")
    ui.add_argument("--backend-store-uri", help="default: the config's tracking.uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=port_number, default=5000)
    ui.set_defaults(run=_ui)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except BadInput as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT


def entry_point() -> None:
    """`lth` as a program (the installed script, `python -m lth_sweep.orchestrator.cli`). Before exiting,
    the objects left are frozen out of the garbage collector: Python's last collections would
    otherwise walk the ~400K objects torch, Ray and MLflow leave behind, 1.3-2 s at every exit,
    to free memory the process is about to hand back whole."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    # `python -m lth_sweep.orchestrator.cli`: run the module under its own name, whose BadInput is
    # the one the other commands' modules (cli_export, cli_report) raise; this copy's is another class.
    from lth_sweep.orchestrator.cli import entry_point as installed_entry_point

    installed_entry_point()
