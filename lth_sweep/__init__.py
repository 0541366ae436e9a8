"""lth-sweep from Python (a notebook, a script, a service): run a sweep, read it back, judge it,
export a ticket. Nothing here prints; progress and notes go to `logging` (loggers under
"lth_sweep"), so switch them on with e.g.
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

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("lth-sweep")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"

#: Every public name and the module that holds it, imported on first use: `import lth_sweep.X`
#: (a trial worker, the ticket board's actor, `lth --help`) costs nothing more than X itself.
_PUBLIC = {
    **dict.fromkeys(["run_sweep", "load_sweep", "read_sweep", "judge", "export_ticket"], "lth_sweep.api"),
    **dict.fromkeys(["SweepConfig", "config_from_dict", "load_config"], "lth_sweep.orchestrator.config"),
    "ConfigError": "lth_sweep.orchestrator.config_errors",
    "BadStore": "lth_sweep.orchestrator.preflight", "SweepNotFound": "lth_sweep.analysis.query",
    "SweepAmbiguous": "lth_sweep.analysis.query", "ExportError": "lth_sweep.export.errors",
    "SweepInterrupted": "lth_sweep.orchestrator.interrupt", "SweepBusy": "lth_sweep.orchestrator.lease",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lth_sweep' has no attribute {name!r}")
