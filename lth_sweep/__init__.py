"""lth-sweep from Python (a notebook, a script, a service): run a sweep, read it back, judge it,
export a ticket. Nothing here prints; progress and notes go to `logging` (loggers under
"orchestrator", "trainables", "analysis"), so switch them on with e.g.
`logging.basicConfig(level=logging.INFO)`. Bad input raises the CLI's errors, each naming the
problem: `ConfigError` (the config), `BadStore` (storage or tracking store), `SweepNotFound` /
`SweepAmbiguous` (reading), `ExportError` (exporting).

    import lth_sweep as lth

    config = lth.load_config("configs/quickstart.yaml", overrides=["seeds=[0]"])
    result = lth.run_sweep(config)               # a SweepOutcome: .succeeded, .table(), .summary()
    frame = lth.load_sweep(config.name)          # one row per (lineage, round)
    verdicts = lth.judge(frame)                  # winning tickets per configuration and method
    lth.export_ticket(config.name, label="imp", seed=0, round=3, format="onnx", out="imp.onnx")
    lth.export_ticket(config.name, label="imp", seed=0, register="quickstart-imp")  # its winning ticket

"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version
from pathlib import Path

from orchestrator.config import SweepConfig, config_from_dict, load_config
from orchestrator.config_errors import ConfigError

try:
    __version__ = _version("lth-sweep")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"

#: errors a caller may catch, importable from here without importing what raises them up front
_ERRORS = {
    "BadStore": "orchestrator.preflight", "SweepNotFound": "analysis.query", "SweepAmbiguous": "analysis.query",
    "ExportError": "trainables.export.errors", "SweepInterrupted": "orchestrator.interrupt", "SweepBusy": "orchestrator.lease",
}


def __getattr__(name: str):
    if name in _ERRORS:
        import importlib

        return getattr(importlib.import_module(_ERRORS[name]), name)
    raise AttributeError(f"module 'lth_sweep' has no attribute {name!r}")


__all__ = [*_ERRORS, 
    "ConfigError", "SweepConfig", "config_from_dict", "export_ticket", "judge", "load_config", "load_sweep",
    "read_sweep", "run_sweep",
]


def run_sweep(config: SweepConfig | dict | str | Path | None = None, overrides: list[str] = (), *, address: str | None = None,
              progress: bool = False, wait: bool = False):
    """Runs (or continues) a sweep and returns its `SweepOutcome`, as `lth sweep` does.

    `config`: a `SweepConfig`, the mapping a YAML file holds, a path to one, or None for the
    quickstart; `overrides`: `--set` assignments ("train.epochs=2"). `address`: a Ray cluster to
    join (default: the Ray this process has initialised, else a local one). `progress=True`
    prints the round-by-round lines to stderr as the CLI does; by default they go to logging.
    Raises `orchestrator.lease.SweepBusy` while another driver runs the sweep on the same store
    (`wait=True` waits for it to end), `orchestrator.interrupt.SweepInterrupted` on Ctrl-C, SIGTERM
    or SIGHUP (run it again to continue)."""
    from orchestrator.plan import make_plan
    from orchestrator.preflight import check_sweep_stores
    from orchestrator.progress import Console, LogConsole
    from orchestrator.sweep import run_sweep as run_plan

    config = _as_config(config, overrides)
    plan = make_plan(config)
    check_sweep_stores(config, Path.cwd())
    return run_plan(plan, address=address, console=Console() if progress else LogConsole(), check_store=False, wait=wait)


def load_sweep(sweep: str, tracking_uri: str | None = None, experiment: str | None = None, sweep_id: str | None = None):
    """The sweep's tidy table (pandas): one row per (lineage, round), config fields, every metric,
    the trunk's value of each as `dense/<metric>`. Default store: $MLFLOW_TRACKING_URI or
    ./mlflow.db. Several sweeps of one name: the latest, unless `sweep_id` (a prefix will do)."""
    from analysis.query import load_sweep as load

    return load(sweep, _reading_uri(tracking_uri), experiment, sweep_id=sweep_id)


def read_sweep(sweep: str, tracking_uri: str | None = None, experiment: str | None = None, sweep_id: str | None = None):
    """Everything MLflow holds about a sweep, read once: a `SweepRecord` (parent, trunks,
    lineages, metric histories); `.frame()` is `load_sweep`'s table."""
    from analysis.query import read_sweep as read

    return read(sweep, _reading_uri(tracking_uri), experiment, sweep_id=sweep_id)


def judge(sweep, metrics=None, margin: dict[str, float] | float | None = None, relative: bool = False,
          tolerance: dict[str, float] | float | None = None) -> dict:
    """Winning tickets, regions and LTH-PASS per trunk configuration and method, as `lth tickets
    --format json` gives them. `sweep`: a sweep's name (read from the default store) or a
    `load_sweep` frame; `margin` (old name `tolerance`): fixed before the data, default the registry's."""
    from analysis.tickets import DEFAULT_METRICS, judge as judge_frame

    frame = load_sweep(sweep) if isinstance(sweep, str) else sweep
    return judge_frame(frame, metrics or list(DEFAULT_METRICS), margin=margin if margin is not None else tolerance, relative=relative)


def export_ticket(sweep: str, *, label: str, seed: int, out: str | Path | None = None, round: int | None = None,
                  format: str = "safetensors", slim: bool = False, force: bool = False, register: str | None = None,
                  metric: str | None = None, tracking_uri: str | None = None, experiment: str | None = None,
                  sweep_id: str | None = None) -> Path | None:
    """Writes one lineage's ticket as `lth export` does: round `round`, or without it the label's
    winning ticket on `metric` (as `judge` finds it); `format` safetensors (a folder with a
    loader that needs only torch), torchscript or onnx; `slim` cuts removed channels out (filter,
    channel_in). Returns the path written (None with only `register`). `register`: also log it as
    an ONNX model version of that registered model in MLflow's registry, its lineage's run as
    source. Raises `trainables.export.errors.ExportError` naming what is wrong."""
    from trainables.export.errors import ExportError
    from trainables.export.export import ExportRequest, export_ticket as export

    if out is None and register is None:
        raise ExportError("give `out` (where to write the ticket), `register` (MLflow's model registry), or both")
    request = ExportRequest(
        tracking_uri=_reading_uri(tracking_uri), sweep=sweep, label=label, seed=seed, round_index=round,
        export_format=format, slim=slim, sweep_id=sweep_id, experiment=experiment, metric=metric,
    )
    path = export(request, out, force=force)[0] if out is not None else None
    if register is not None:
        from trainables.export.registry import register_ticket

        register_ticket(request, register)
    return path


def _as_config(config, overrides) -> SweepConfig:
    if isinstance(config, SweepConfig):
        return config_from_dict(config.model_dump(mode="json", exclude_unset=True), overrides) if overrides else config
    if isinstance(config, dict):
        return config_from_dict(config, overrides)
    return load_config(config, list(overrides))


def _reading_uri(tracking_uri: str | None) -> str:
    """The store, checked in seconds without creating it (MLflow's client would create a missing
    SQLite file and retry an absent server for minutes)."""
    from orchestrator.preflight import check_reading_store, tracking_source
    from orchestrator.tracking_store import resolve_uri

    uri = resolve_uri(tracking_uri, Path.cwd())  # %-escapes written out, a relative path made absolute
    check_reading_store(uri, tracking_source(tracking_uri, "tracking_uri"))
    return uri
