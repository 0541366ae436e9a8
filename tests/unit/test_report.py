"""`lth report`: a real sweep's record (trained in-process, logged to MLflow on SQLite through the
sweep's own tracker and the trial's RunLogger, as tests/unit/test_export.py logs it) written as one
self-contained HTML page and a Markdown file with its figures, logged to the parent run; what the
parent lacks (plots, verdicts) is recomputed; bad input exits 2 and nothing is half-written."""
from __future__ import annotations

import base64
import html.parser
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from lth_sweep.orchestrator import report as report_module
from lth_sweep.orchestrator.config import SweepConfig
from lth_sweep.orchestrator.mlflow_runs import flatten
from lth_sweep.orchestrator.report_about import config_text, run_url, shown
from lth_sweep.orchestrator.store_copy import copy_store
from lth_sweep.trainables import record
from lth_sweep.trainables.trunk import train_trunk
from tests.support.lth_cli import run_lth
from tests.support.tiny import tiny_lineage, tiny_trunk
from tests.unit.test_export import EXPERIMENT, log_sweep

pytestmark = pytest.mark.usefixtures("one_thread")

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  #: git-ignored; where the browser tests leave theirs
PNG = b"\x89PNG\r\n\x1a\n"
TRAIN = {"epochs": 3}
PRUNING = [dict(method="imp", rate=0.5, rounds=3), dict(method="random", rate=0.5, rounds=3)]
CONFIG = """  # the same sweep as a config: the parent's params
name: tiny
seeds: [0, 1]
data: {image_size: 16, train_size: 256, test_size: 128, ood_size: 0}
model: {name: conv2, width: 4}
train: {epochs: 3, batch_size: 32, lr: 0.01}
pruning:
  - {method: imp, rate: 0.5, rounds: 3}
  - {method: random, rate: 0.5, rounds: 3}
tracking: {experiment: export}
"""


@dataclass
class Store:
    uri: str
    database: Path
    parent_id: str
    lineages: dict[str, str]  # run name ("imp s0") -> run id

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)


def make_store(folder: Path, template: Path) -> Store:
    """The sweep `tiny` (seeds 0 and 1, imp and random, 3 rounds each), its parent holding the
    config's params as `lth sweep` logs them, and no plots, verdicts or summary."""
    database = folder / "mlflow.db"
    shutil.copyfile(template, database)
    uri = f"sqlite:///{database}"
    config = SweepConfig.model_validate(yaml.safe_load(CONFIG))
    lineages = {}
    for seed in config.seeds:
        trunk = train_trunk(tiny_trunk(seed, **TRAIN))
        _, runs = log_sweep(uri, config.name, trunk, [tiny_lineage(seed, train=TRAIN, **entry) for entry in PRUNING])
        lineages |= {f"{label} s{seed}": run_id for label, run_id in runs.items()}
    client = MlflowClient(uri)
    (parent,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id], f"tags.`{record.KIND}` = 'sweep'")
    record.log_params(client, parent.info.run_id, flatten(config.model_dump(mode="json", exclude={"tracking": {"rerun_stale"}})))
    return Store(uri, database, parent.info.run_id, lineages)


def copied(store: Store, folder: Path) -> Store:
    """An independent copy of the store (`lth store copy`), to change without touching the original."""
    copy_store(store.database, folder / "mlflow.db")
    forget_artifact_repositories()
    return Store(f"sqlite:///{folder / 'mlflow.db'}", folder / "mlflow.db", store.parent_id, store.lineages)


def forget_artifact_repositories() -> None:
    """MLflow's client caches each run's artifact repository by run id alone, process-wide, and
    logs through it: a copy's runs keep their ids, so without this, what is logged to a copy's
    run in this process lands in the original store's run."""
    from mlflow.tracking._tracking_service import utils

    utils._artifact_repos_cache.clear()


def report(store: Store, cwd: Path, *args: str):
    outcome = run_lth(["report", "tiny", "--tracking-uri", store.uri, *args], cwd)
    assert outcome.code == 0, outcome.stderr
    return outcome


@pytest.fixture(scope="module")
def store(_empty_mlflow_db, tmp_path_factory) -> Store:
    return make_store(tmp_path_factory.mktemp("report-store"), _empty_mlflow_db)


@pytest.fixture(scope="module")
def written(store, tmp_path_factory) -> Path:
    """The report of the sweep as its record stands: the default folder ./tiny-report/."""
    cwd = tmp_path_factory.mktemp("report")
    outcome = report(store, cwd)
    assert outcome.stdout.splitlines() == [str(cwd / "tiny-report" / "report.html"), str(cwd / "tiny-report" / "report.md")]
    return cwd / "tiny-report"


class Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(page: str) -> list[tuple[str, dict]]:
    parser = Tags()
    parser.feed(page)
    return parser.tags


def test_the_html_is_self_contained(written, store):
    page = (written / "report.html").read_text()
    tags = tags_of(page)
    assert not {"script", "link", "iframe", "object", "embed", "base"} & {tag for tag, _ in tags}
    assert "url(" not in page and "@import" not in page
    images = [attrs["src"] for tag, attrs in tags if tag == "img"]
    assert len(images) >= 2  # accuracy, and generalisation (test/acc, test/loss)
    for source in images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.removeprefix("data:image/png;base64,"), validate=True).startswith(PNG)
    assert [attrs["src"] for tag, attrs in tags if "src" in attrs] == images
    link = run_url(store.uri, store.client.get_run(store.parent_id).info.experiment_id, store.parent_id)
    assert [attrs["href"] for _, attrs in tags if "href" in attrs] == [link]
    assert not re.search(r"https?://", page.replace(link, "")), "only the MLflow run's link may point off the page"


def test_the_report_holds_config_provenance_summary_verdicts_and_how_to_export(written, store):
    page = (written / "report.html").read_text()
    parent = store.client.get_run(store.parent_id).data
    assert "sweep id</td><td><code>tiny-id</code>" in page and store.parent_id in page and store.uri in page
    # config: the parent's params, nested
    assert "name: tiny" in page and "train:\n  batch_size: 32" in page and "  epochs: 3" in page
    # provenance: the versions and commit the runs record
    for tag in (record.VERSION_LTH_SWEEP, record.VERSION_TORCH, record.VERSION_RAY, record.VERSION_MLFLOW, record.VERSION_PYTHON):
        assert f"<code>{parent.tags[tag]}</code>" in page
    if record.GIT_COMMIT in parent.tags:
        assert parent.tags[record.GIT_COMMIT] in page
    assert "1 sweep, 2 trunks, 4 lineages" in page
    # the summary, one row per lineage, and the verdicts recomputed (the parent holds none)
    assert not store.client.list_artifacts(store.parent_id, "verdicts")
    for name in store.lineages:
        assert f"<td>{name}</td>" in page
    assert page.count("<td>dense (reference)</td>") == 2  # the winning-ticket rule and test/acc
    assert re.search(r"<td class=\"n\"><strong>0\.\d{4} ± 0\.\d{4} \(2\)</strong></td>", page), "imp's ticket, in bold"
    assert "Noise: <code>test/acc</code>: margin 0.005" in page and "noise floor, what dense networks" in page
    assert "<details><summary>The verdicts as <code>lth tickets</code> prints them" in page
    assert "lth export --sweep tiny --sweep-id tiny-id --label imp --seed 0 --winning --out imp-s0-ticket" in page
    assert "Figures drawn for this report: the parent run holds no <code>plots/</code>" in page


def test_the_markdown_says_the_same_with_its_figures_beside_it(written):
    text = (written / "report.md").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "figures/accuracy_vs_sparsity.png" in figures
    for figure in figures:
        assert (written / figure).read_bytes().startswith(PNG)
    assert sorted(path.name for path in (written / "figures").iterdir()) == sorted(Path(f).name for f in figures)
    assert "| dense (reference) |" in text and "name: tiny" in text and "lth export --sweep tiny" in text


def test_the_report_is_logged_to_the_parent_run(written, store):
    logged = {item.path for item in store.client.list_artifacts(store.parent_id, "report")}
    assert logged == {"report/report.html", "report/report.md", "report/figures"}
    figures = {Path(item.path).name for item in store.client.list_artifacts(store.parent_id, "report/figures")}
    assert figures == {path.name for path in (written / "figures").iterdir()}


def test_the_sweeps_own_plots_and_registered_tickets_are_shown(written, store, tmp_path):
    """A parent with `plots/` (as a sweep's end logs them): those figures, none drawn again; a
    ticket registered from a lineage (`lth export --register`): listed instead of how to export."""
    changed = copied(store, tmp_path / "store")
    client = changed.client
    client.log_artifact(changed.parent_id, str(written / "figures" / "accuracy_vs_sparsity.png"), record.PLOTS_FOLDER)
    client.create_registered_model("tiny-imp")
    source = f"runs:/{changed.lineages['imp s0']}/ticket"
    client.create_model_version("tiny-imp", source, run_id=changed.lineages["imp s0"], tags={"lth.round": "3", "lth.winning": "true"})
    client.create_registered_model("elsewhere")
    client.create_model_version("elsewhere", "runs:/0123/ticket")  # not from this sweep: not listed
    try:
        report(changed, tmp_path, "--out", "shared")
    finally:
        forget_artifact_repositories()
    text = (tmp_path / "shared" / "report.md").read_text()
    assert "as the sweep logged them on its parent run (`plots/`)" in text
    assert [path.name for path in (tmp_path / "shared" / "figures").iterdir()] == ["accuracy_vs_sparsity.png"]
    assert f"| `models:/tiny-imp/1` | imp s0 | 3 | true | - | `{source}` |" in text
    assert "elsewhere" not in text and "Export one with" not in text


def test_bad_input_exits_2_with_one_line_and_creates_nothing(store, tmp_path):
    missing = run_lth(["report", "tiny", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"], tmp_path)
    unknown = run_lth(["report", "tinyy", "--tracking-uri", store.uri], tmp_path)
    wrong_id = run_lth(["report", "tiny", "--tracking-uri", store.uri, "--sweep-id", "nope"], tmp_path)
    for outcome in (missing, unknown):
        assert outcome.code == 2 and not outcome.traceback, outcome.stderr
        assert outcome.stdout == "" and len(outcome.stderr.strip().splitlines()) == 1, outcome.stderr
    assert "no database" in missing.stderr and "did you mean 'tiny'?" in unknown.stderr
    assert wrong_id.code == 2 and "tiny-id" in wrong_id.stderr  # as `lth query`: the sweeps of that name listed
    assert missing.left == unknown.left == wrong_id.left == []


def test_an_existing_report_is_replaced_only_with_force(store, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.html").write_text("an older report")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a report")
    kept = run_lth(["report", "tiny", "--tracking-uri", store.uri, "--out", "out"], tmp_path)
    assert kept.code == 2 and "holds a report already; pass --force" in kept.stderr
    other = run_lth(["report", "tiny", "--tracking-uri", store.uri, "--out", "other", "--force"], tmp_path)
    assert other.code == 2 and "holds files that are not a report" in other.stderr
    assert kept.left == other.left == ["other/notes.txt", "out/report.html"]
    assert (tmp_path / "out" / "report.html").read_text() == "an older report"
    report(store, tmp_path, "--out", "out", "--force")
    assert (tmp_path / "out" / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["other", "out"]  # no staging folder left


def test_a_report_that_fails_midway_leaves_the_old_one_untouched(store, tmp_path, monkeypatch):
    from lth_sweep.analysis.query import read_sweep
    from lth_sweep.orchestrator.report_record import read_facts

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.md").write_text("the old report")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_module, "to_html", fail)
    facts = read_facts(read_sweep("tiny", store.uri), store.uri)
    with pytest.raises(OSError):
        report_module.write_report(facts, tmp_path / "out", force=True)
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")) == ["out", "out/report.md"]
    assert (tmp_path / "out" / "report.md").read_text() == "the old report"


def test_a_store_password_is_not_shared():
    assert shown("postgresql://lth:s3cret@db:5432/mlflow") == "postgresql://lth:***@db:5432/mlflow"
    assert shown("sqlite:////data/mlflow.db") == "sqlite:////data/mlflow.db"
    assert run_url("https://me:pw@mlflow.example", "3", "abc") == "https://me:***@mlflow.example/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert config_text({"train.lr": "0.01", "name": "x", "train.epochs": "2"}) == "name: x\ntrain:\n  epochs: 2\n  lr: 0.01"


@pytest.mark.slow
def test_the_page_renders_in_a_browser(written):
    """The report as a reader opens it, in headless Chromium (tests/support/browser.py): every
    figure decoded; left in tests/artifacts/ as report.html and report.png."""
    from tests.support.browser import assert_nontrivial_png, ensure_chromium, quit_chrome, start_chrome

    ensure_chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "report.html"
    shutil.copyfile(written / "report.html", page)
    driver = start_chrome(ARTIFACTS / "report_chromedriver.log", width=1280, height=1000)
    try:
        driver.get(page.as_uri())
        widths = driver.execute_script("return Array.from(document.images, image => image.complete ? image.naturalWidth : 0)")
        assert len(widths) >= 2 and all(width > 0 for width in widths), widths
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(height + 100, 16000))
        assert driver.save_screenshot(str(ARTIFACTS / "report.png"))
    finally:
        quit_chrome(driver)
    assert_nontrivial_png(ARTIFACTS / "report.png", min_width=1200, min_height=1500)
