"""The report's figures: the PNGs the sweep logged on its parent run (`plots/`), or, where it
logged none (a sweep interrupted before its end, a record made without the driver), drawn now
from the sweep's table by the same functions the driver draws them with."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from lth_sweep.orchestrator.report_record import SweepFacts
from lth_sweep.trainables import record


@dataclass(frozen=True)
class Figures:
    paths: list[Path]
    source: str  # where they came from, as the report says it


def gather_figures(facts: SweepFacts, folder: Path) -> Figures:
    """The figures, as files in `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    logged = download_plots(facts, folder)
    if logged:
        return Figures(logged, f"as the sweep logged them on its parent run (`{record.PLOTS_FOLDER}/`)")
    return Figures(draw_plots(facts, folder), f"drawn for this report: the parent run holds no `{record.PLOTS_FOLDER}/`")


def download_plots(facts: SweepFacts, folder: Path) -> list[Path]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(facts.uri)
    if not any(item.path.endswith(".png") for item in client.list_artifacts(facts.parent_id, record.PLOTS_FOLDER)):
        return []
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        downloaded = Path(client.download_artifacts(facts.parent_id, record.PLOTS_FOLDER, scratch))
        return sorted((png.replace(folder / png.name) for png in downloaded.glob("*.png")), key=_accuracy_first)


def draw_plots(facts: SweepFacts, folder: Path) -> list[Path]:
    from lth_sweep.analysis.plots import sweep_figures

    return sweep_figures(facts.rows, facts.frame, folder, facts.name)


def _accuracy_first(path: Path) -> tuple[bool, str]:
    return not path.name.startswith("accuracy"), path.name
