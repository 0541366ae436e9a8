"""`lth report`: one sweep as a page to share. `report.html` is self-contained (figures inline,
style inline, no script, nothing fetched); `report.md` says the same with its figures as files
beside it. Both are written whole or not at all (staged in a folder beside `--out`, then renamed
into place) and logged to the sweep's parent run under `report/`."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lth_sweep.orchestrator.report_document import document
from lth_sweep.orchestrator.report_figures import gather_figures
from lth_sweep.orchestrator.report_record import SweepFacts
from lth_sweep.orchestrator.report_render import to_html, to_markdown

HTML, MARKDOWN, FIGURES = "report.html", "report.md", "figures"
ARTIFACT_FOLDER = "report"  #: where the parent run keeps the report


class ReportRefused(Exception):
    """`--out` cannot take the report (it holds one and --force was not given, it holds other
    files, it is not a folder, its folder is missing or read-only)."""


@dataclass(frozen=True)
class Report:
    folder: Path
    figures: list[Path]

    @property
    def html(self) -> Path:
        return self.folder / HTML

    @property
    def markdown(self) -> Path:
        return self.folder / MARKDOWN


def default_out(sweep: str) -> Path:
    return Path(f"{re.sub(r'[^A-Za-z0-9._=-]+', '_', sweep)}-report")


def check_out(out: Path, force: bool) -> None:
    """ReportRefused, before any work, where `out` cannot take the report. A folder that holds a
    report is replaced only with `force`; one that holds anything else never is."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ReportRefused(f"--out {out} is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not any((out / name).exists() for name in (HTML, MARKDOWN)):
            raise ReportRefused(f"--out {out} holds files that are not a report; give a new or empty folder")
        if not force:
            raise ReportRefused(f"{out} holds a report already; pass --force to replace it")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise ReportRefused(f"cannot write {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ReportRefused(f"cannot write {out}: folder {parent} is not writable")


def write_report(facts: SweepFacts, out: Path, force: bool = False) -> Report:
    """Writes the report into `out` (see `check_out`) and returns where it is."""
    from lth_sweep.trainables import provenance, record

    out = out.absolute()
    check_out(out, force)
    workspace = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        staging = workspace / "report"
        figures = gather_figures(facts, staging / FIGURES)
        blocks = document(facts, figures, f"lth-sweep {provenance.versions()[record.VERSION_LTH_SWEEP]}")
        (staging / MARKDOWN).write_text(to_markdown(blocks, staging), encoding="utf-8")
        (staging / HTML).write_text(to_html(blocks, f"lth-sweep report: {facts.name} ({facts.sweep_id})"), encoding="utf-8")
        if out.exists():  # replaced only now, by a complete report; the old one is moved aside first
            os.replace(out, workspace / "replaced")
        os.replace(staging, out)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return Report(out, [out / FIGURES / path.name for path in figures.paths])


def log_report(facts: SweepFacts, report: Report) -> None:
    """The report's files on the sweep's parent run, under `report/`."""
    from mlflow.tracking import MlflowClient

    MlflowClient(facts.uri).log_artifacts(facts.parent_id, str(report.folder), ARTIFACT_FOLDER)
