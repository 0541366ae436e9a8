"""The functions `lth_sweep` offers (`lth_sweep/__init__.py` loads this module on first use)."""
from __future__ import annotations

from pathlib import Path

from lth_sweep.orchestrator.config import SweepConfig, config_from_dict, load_config


def run_sweep(config: SweepConfig | dict | str | Path | None = None, overrides: list[str] = (), *, address: str | None = None,
              progress: bool = False, wait: bool = False):
    """Runs (or continues) a sweep and returns its `SweepOutcome`, as `lth sweep` does.

    `config`: a `SweepConfig`, the mapping a YAML file holds, a path to one, or None for the
    quickstart; `overrides`: `--set` assignments ("train.epochs=2"). `address`: a Ray cluster to
    join (default: the Ray this process has initialised, else a local one). `progress=True`
    prints the round-by-round lines to stderr as the CLI does; by default they go to logging.
    Raises `lth_sweep.SweepBusy` while another driver runs the sweep on the same store
    (`wait=True` waits for it to end), `lth_sweep.SweepInterrupted` on Ctrl-C, SIGTERM
    or SIGHUP (run it again to continue)."""
    from lth_sweep.orchestrator.plan import make_plan
    from lth_sweep.orchestrator.preflight import check_sweep_stores
    from lth_sweep.orchestrator.progress import Console, LogConsole
    from lth_sweep.orchestrator.sweep import run_sweep as run_plan

    config = _as_config(config, overrides)
    plan = make_plan(config)
    check_sweep_stores(config, Path.cwd())
    return run_plan(plan, address=address, console=Console() if progress else LogConsole(), check_store=False, wait=wait)


def load_sweep(sweep: str, tracking_uri: str | None = None, experiment: str | None = None, sweep_id: str | None = None):
    """The sweep's tidy table (pandas): one row per (lineage, round), config fields, every metric,
    the trunk's value of each as `dense/<metric>`. Default store: $MLFLOW_TRACKING_URI or
    ./mlflow.db. Several sweeps of one name: the latest, unless `sweep_id` (a prefix will do)."""
    from lth_sweep.analysis.query import load_sweep as load

    return load(sweep, _reading_uri(tracking_uri), experiment, sweep_id=sweep_id)


def read_sweep(sweep: str, tracking_uri: str | None = None, experiment: str | None = None, sweep_id: str | None = None):
    """Everything MLflow holds about a sweep, read once: a `SweepRecord` (parent, trunks,
    lineages, metric histories); `.frame()` is `load_sweep`'s table."""
    from lth_sweep.analysis.query import read_sweep as read

    return read(sweep, _reading_uri(tracking_uri), experiment, sweep_id=sweep_id)


def judge(sweep, metrics=None, margin: dict[str, float] | float | None = None, relative: bool = False,
          tolerance: dict[str, float] | float | None = None, *, tracking_uri: str | None = None,
          experiment: str | None = None, sweep_id: str | None = None) -> dict:
    """Winning tickets, regions and LTH-PASS per trunk configuration and method, as `lth tickets
    --format json` gives them. `sweep`: a sweep's name, read as `load_sweep` reads it (from
    `tracking_uri`, default $MLFLOW_TRACKING_URI or ./mlflow.db; `experiment`, `sweep_id`), or a
    `load_sweep` frame; `margin` (old name `tolerance`): fixed before the data, default the registry's."""
    from lth_sweep.analysis.sweep_verdicts import DEFAULT_METRICS, judge as judge_frame

    if isinstance(sweep, str):
        frame = load_sweep(sweep, tracking_uri, experiment, sweep_id)
    elif tracking_uri is not None or experiment is not None or sweep_id is not None:
        raise TypeError("tracking_uri, experiment and sweep_id say where to read a sweep by its name; `sweep` is a frame")
    else:
        frame = sweep
    return judge_frame(frame, metrics or list(DEFAULT_METRICS), margin=margin if margin is not None else tolerance, relative=relative)


def export_ticket(sweep: str, *, label: str, seed: int, out: str | Path | None = None, round: int | None = None,
                  format: str = "safetensors", slim: bool = False, force: bool = False, register: str | None = None,
                  metric: str | None = None, tracking_uri: str | None = None, experiment: str | None = None,
                  sweep_id: str | None = None) -> Path | None:
    """Writes one lineage's ticket as `lth export` does: round `round`, or without it the label's
    winning ticket on `metric` (as `judge` finds it); `format` safetensors (`out` names a folder:
    weights, model.py and a loader that needs only torch), torchscript or onnx; `slim` cuts removed
    channels out (filter, channel_in). Returns the path written (None with only `register`).
    `register`: also log it as an ONNX model version of that registered model in MLflow's
    registry, its lineage's run as source. Prints nothing (no MLflow progress bar, no ONNX
    exporter notes). Raises `export.errors.ExportError` naming what is wrong."""
    from lth_sweep.export.errors import ExportError
    from lth_sweep.export.export import ExportRequest, export_ticket as export

    if out is None and register is None:
        raise ExportError("give `out` (where to write the ticket), `register` (MLflow's model registry), or both")
    request = ExportRequest(
        tracking_uri=_reading_uri(tracking_uri), sweep=sweep, label=label, seed=seed, round_index=round,
        export_format=format, slim=slim, sweep_id=sweep_id, experiment=experiment, metric=metric,
    )
    path = export(request, out, force=force)[0] if out is not None else None
    if register is not None:
        from lth_sweep.export.model_registry import register_ticket

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
    from lth_sweep.orchestrator.preflight import check_reading_store, tracking_source
    from lth_sweep.orchestrator.tracking_store import resolve_uri

    uri = resolve_uri(tracking_uri, Path.cwd())  # %-escapes written out, a relative path made absolute
    check_reading_store(uri, tracking_source(tracking_uri, "tracking_uri"))
    return uri
