"""What a user sees in MLflow's UI after a sweep: a tiny real sweep (real Ray Tune, real MLflow on
SQLite, the analysis actors on; `ui_sweep` in conftest.py, shared with test_mlflow_browse.py),
`lth ui` on its store, a headless Chromium (Debian's package,
driven by Selenium; see tests/support/browser.py) that finds the sweep's parent run with its
trunk and lineages nested under it, a metric chart in the experiment's chart view and on a
lineage's page, what made a lineage's run (user, source, lth-sweep's commit, the versions), and
the parent's accuracy plot and a lineage's Grad-CAM grid as artifacts.

Screenshots go to tests/artifacts/mlflow_ui_*.png (kept for CI to collect and for people to look
at); a look-up that fails also saves the page there as mlflow_ui_failed_*.png/.html/.txt.

MLflow 3.17 opens an experiment in its GenAI view unless the browser was switched to
"Model training" before, so the URLs here carry `?workflowType=machine_learning`.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from lth_sweep.analysis.colors import series_key
from lth_sweep.orchestrator.mlflow_view import CHART_METRICS, X_AXIS_METRIC, comparison_url
from tests.support.browser import (
    assert_nontrivial_png,
    by_css,
    by_xpath,
    close_assistant,
    js_click,
    quit_chrome,
    start_chrome,
    wait_for,
    xpath_literal,
)
from tests.support.ui_sweep import ARTIFACTS, UI_LINEAGES, UI_ROUNDS, UI_TRUNK
from lth_sweep.trainables import provenance, record

pytestmark = pytest.mark.slow

ML_VIEW = "workflowType=machine_learning"
ROUNDS, TRUNK, LINEAGES = UI_ROUNDS, UI_TRUNK, UI_LINEAGES


@pytest.fixture(scope="module")
def sweep(ui_sweep):
    """The sweep's folder and its runs: {"experiment_id", "parent": run, run name: run, ...}."""
    return ui_sweep.workdir, {"experiment_id": ui_sweep.experiment_id, **ui_sweep.runs}


@pytest.fixture
def browser(chromium):
    """A new headless Chromium with an empty profile for each test: no state carried between them."""
    driver = start_chrome(ARTIFACTS / "mlflow_ui_chromedriver.log")
    yield driver
    quit_chrome(driver)


def screenshot(driver, name: str) -> Path:
    """Saves the window as tests/artifacts/mlflow_ui_<name>.png and checks it is a real picture."""
    time.sleep(0.5)  # let charts finish their transition
    path = ARTIFACTS / f"mlflow_ui_{name}.png"
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    assert_nontrivial_png(path, min_width=1200, min_height=700)
    return path


def link_to_run(run_id: str, name: str) -> str:
    return f'//a[contains(@href, "/runs/{run_id}") and normalize-space()={xpath_literal(name)}]'


def open_runs_table(driver, url: str, runs: dict) -> None:
    """The experiment's runs table with the sweep's parent run expanded."""
    parent = runs["parent"]
    driver.get(f"{url}/#/experiments/{runs['experiment_id']}/runs?{ML_VIEW}")
    wait_for(driver, by_xpath(link_to_run(parent.info.run_id, "ui")), "the sweep's parent run 'ui' in the runs table", ARTIFACTS)
    close_assistant(driver)
    expand_parent(driver, runs)


def expand_parent(driver, runs: dict) -> None:
    parent = runs["parent"]
    first_child = runs[LINEAGES[0]].info.run_id
    if not by_xpath(link_to_run(first_child, LINEAGES[0]))(driver):
        expander = wait_for(
            driver,
            by_css(f'[role="row"][row-id="{parent.info.run_id}"] [col-id="attributes.`Run Name`"] button'),
            "the expander of the parent run's nested runs",
            ARTIFACTS,
        )
        js_click(driver, expander[0])


def chart_card(driver, metric: str, what: str):
    """The chart card titled with `metric` (its h4 carries the full name as title), scrolled into
    view: MLflow draws the charts of a section only once the section is on screen."""
    card = (
        '//*[@data-testid="experiment-view-compare-runs-card"]'
        f'[.//h4[@title={xpath_literal(metric)}]][.//*[contains(@class, "js-plotly-plot")]//*[contains(@class, "scatterlayer")]]'
    )
    section = (
        '//*[@data-testid="experiment-view-compare-runs-section-header"]'
        f'[.//div[normalize-space()={xpath_literal(metric.rsplit("/", 1)[0])}]]'
    )

    def find(d):
        found = by_xpath(card)(d)
        if not found:
            for header in d.find_elements("xpath", section):
                d.execute_script("arguments[0].scrollIntoView({block: 'start'});", header)
        return found

    found = wait_for(driver, find, what, ARTIFACTS)[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", found)
    return found


def search_charts(driver, text: str) -> None:
    box = wait_for(driver, by_css('input[placeholder="Search metric charts"]'), "the chart search box", ARTIFACTS)[0]
    box.clear()
    box.send_keys(text)


def plotted_points(card) -> int:
    from selenium.webdriver.common.by import By

    return len(card.find_elements(By.CSS_SELECTOR, "g.trace.scatter g.points path"))


def test_runs_table_nests_trunk_and_lineages_under_the_sweep(browser, ui, sweep):
    _, runs = sweep
    parent = runs["parent"]
    browser.get(f"{ui.url}/#/experiments/{runs['experiment_id']}/runs?{ML_VIEW}")
    parent_link = wait_for(browser, by_xpath(link_to_run(parent.info.run_id, "ui")), "the parent run 'ui'", ARTIFACTS)[0]
    close_assistant(browser)
    # Collapsed: only the parent row, though the table counts every run (parent, trunk, lineages).
    every = f"{2 + len(LINEAGES)} matching runs"
    wait_for(browser, by_xpath(f'//*[normalize-space()="{every}"]'), repr(every), ARTIFACTS)
    for name in (TRUNK, *LINEAGES):
        assert not by_xpath(link_to_run(runs[name].info.run_id, name))(browser), f"{name} shown before expanding the parent"
    screenshot(browser, "runs_collapsed")

    expand_parent(browser, runs)
    children = {}
    for name in (TRUNK, *LINEAGES):
        (children[name],) = wait_for(browser, by_xpath(link_to_run(runs[name].info.run_id, name)), f"nested run {name!r}", ARTIFACTS)
    parent_link = by_xpath(link_to_run(parent.info.run_id, "ui"))(browser)[0]
    for name, link in children.items():  # nested: below the parent and indented
        assert link.location["y"] > parent_link.location["y"], name
        assert link.location["x"] > parent_link.location["x"], name
    screenshot(browser, "runs_expanded")


def test_chart_view_plots_test_acc_of_every_lineage(browser, ui, sweep):
    _, runs = sweep
    open_runs_table(browser, ui.url, runs)
    wait_for(browser, by_xpath(link_to_run(runs[LINEAGES[0]].info.run_id, LINEAGES[0])), "the expanded runs", ARTIFACTS)
    chart_mode = wait_for(
        browser, lambda d: d.find_elements("xpath", '//input[@name="runs-view-mode" and @value="CHART"]'), "the chart-view switch", ARTIFACTS
    )
    js_click(browser, chart_mode[0])
    search_charts(browser, "test/acc")
    card = chart_card(browser, "test/acc", "the chart of test/acc in the chart view")
    legend = card.get_attribute("textContent")
    for name in LINEAGES:
        assert f"{name} (test/acc)" in legend, f"{name} missing from the test/acc chart: {legend!r}"
    # Every lineage x ROUNDS rounds, plus the trunk's dense accuracy at step 0.
    assert plotted_points(card) >= len(LINEAGES) * ROUNDS
    close_assistant(browser)
    screenshot(browser, "chart_view_test_acc")


def test_lineage_page_charts_gradcam_rank_correlation_per_round(browser, ui, sweep):
    _, runs = sweep
    lineage = runs["imp@3 s0"]
    browser.get(f"{ui.url}/#/experiments/{runs['experiment_id']}/runs/{lineage.info.run_id}/model-metrics?{ML_VIEW}")
    wait_for(browser, by_xpath('//*[@data-testid="runs-header" and normalize-space()="imp@3 s0"]'), "the lineage's page title", ARTIFACTS)
    close_assistant(browser)
    search_charts(browser, "gradcam_rank_corr")
    card = chart_card(browser, "xai/gradcam_rank_corr", "the chart of xai/gradcam_rank_corr on the lineage's page")
    assert "imp@3 s0 (xai/gradcam_rank_corr)" in card.get_attribute("textContent")
    assert wait_for(browser, lambda d: plotted_points(card) == ROUNDS, f"{ROUNDS} points, one per round", ARTIFACTS)
    screenshot(browser, "lineage_gradcam_rank_corr")


def test_lineage_page_says_who_and_what_made_the_run(browser, ui, sweep):
    """"About this run": the user, the source (the program that ran `lth`) with lth-sweep's commit,
    and the versions among the run's tags."""
    _, runs = sweep
    lineage = runs["imp@3 s0"]
    tags = lineage.data.tags
    browser.get(f"{ui.url}/#/experiments/{runs['experiment_id']}/runs/{lineage.info.run_id}?{ML_VIEW}")
    wait_for(browser, by_xpath('//*[@data-testid="runs-header" and normalize-space()="imp@3 s0"]'), "the lineage's page title", ARTIFACTS)
    close_assistant(browser)
    (user,) = wait_for(browser, by_xpath('//*[@data-testid="key-value-Created by"]'), "'Created by' in 'About this run'", ARTIFACTS)
    assert tags[record.USER] in user.text, user.text
    (source,) = wait_for(browser, by_xpath('//*[@data-testid="key-value-Source"]'), "'Source' in 'About this run'", ARTIFACTS)
    assert Path(tags[record.SOURCE_NAME]).name in source.text, source.text
    if record.GIT_COMMIT in tags:  # the UI shows a commit's first 7 characters
        assert tags[record.GIT_COMMIT][:7] in source.text, source.text
    for key in provenance.VERSION_TAGS:
        (tag,) = wait_for(browser, by_xpath(f'//*[@role="status" and @title={xpath_literal(key)}]'), f"the tag {key}", ARTIFACTS)
        assert "".join(tag.text.split()) == f"{key}:{tags[key]}", tag.text  # the UI breaks the line after the key
    screenshot(browser, "lineage_provenance")


def loaded_image(name: str):
    """An <img> showing artifact `name` that the browser has decoded (MLflow serves it as a blob)."""
    script = (
        "return [...document.images].filter(i => i.alt === arguments[0] && i.complete && i.naturalWidth > 0)"
        ".map(i => [i.naturalWidth, i.naturalHeight]);"
    )
    return lambda d: d.execute_script(script, name)


def test_parent_run_shows_the_summary_and_the_accuracy_plot(browser, ui, sweep):
    _, runs = sweep
    parent = runs["parent"]
    base = f"{ui.url}/#/experiments/{runs['experiment_id']}/runs/{parent.info.run_id}"
    browser.get(f"{base}?{ML_VIEW}")
    wait_for(browser, by_xpath('//h4[starts-with(normalize-space(), "Description")]'), "the parent run's description", ARTIFACTS)
    close_assistant(browser)
    text = browser.execute_script("return document.body.textContent")
    assert "lth-sweep ui" in text and "imp@3 s0" in text, "the summary table is not the parent run's description"
    cells = [cell.get_attribute("textContent") for cell in browser.find_elements("css selector", "td")]
    name_cells = [cell for cell in cells if "imp@3 s0" in cell]
    assert name_cells and all(cell.strip("\u00a0 ") == "imp@3 s0" and cell != cell.strip("\u00a0 ") for cell in name_cells), (
        f"a lineage's cell runs into the next one: {name_cells}"  # padded apart: MLflow styles the cells without padding
    )
    for name in (TRUNK, *LINEAGES):  # "Child runs" in "About this run"
        wait_for(browser, by_xpath(link_to_run(runs[name].info.run_id, name)), f"child run link {name!r}", ARTIFACTS)
    screenshot(browser, "parent_overview")

    browser.get(f"{base}/artifacts/plots/accuracy_vs_sparsity.png?{ML_VIEW}")
    ((width, height),) = wait_for(browser, loaded_image("plots/accuracy_vs_sparsity.png"), "the accuracy plot", ARTIFACTS)
    assert width >= 600 and height >= 400
    for plot in ("accuracy", "generalisation", "robustness", "ood", "calibration", "geometry", "gradcam", "concepts"):
        wait_for(browser, by_xpath(f'//*[normalize-space()="{plot}_vs_sparsity.png"]'), f"plots/{plot}_vs_sparsity.png", ARTIFACTS)
    close_assistant(browser)
    screenshot(browser, "parent_accuracy_plot")


def test_lineage_artifacts_show_the_gradcam_grid_and_the_concepts_table(browser, ui, sweep):
    _, runs = sweep
    lineage = runs["imp@3 s0"]
    base = f"{ui.url}/#/experiments/{runs['experiment_id']}/runs/{lineage.info.run_id}/artifacts"
    name = f"xai/gradcam_round_{ROUNDS:02d}.png"
    browser.get(f"{base}/{name}?{ML_VIEW}")
    ((width, height),) = wait_for(browser, loaded_image(name), f"the Grad-CAM grid {name}", ARTIFACTS)
    assert width >= 800 and height >= 300
    close_assistant(browser)
    screenshot(browser, "lineage_gradcam_grid")

    csv = f"concepts_round_{ROUNDS:02d}.csv"
    entry = wait_for(browser, by_xpath(f'//*[normalize-space()="{csv}"]'), f"xai/{csv} in the artifact tree", ARTIFACTS)
    js_click(browser, entry[-1])
    wait_for(browser, by_xpath('//*[normalize-space()="reference_top3"]'), f"the table of xai/{csv}", ARTIFACTS)
    wait_for(browser, by_xpath('//*[normalize-space()="red triangle"]'), f"the rows of xai/{csv}", ARTIFACTS)
    screenshot(browser, "lineage_concepts_table")


def test_the_comparison_view_groups_the_lineages_by_method(browser, ui, sweep):
    """The URL the sweep prints at its end opens the chart view on this sweep's lineages only,
    grouped by the sweep's series tag (its value the label; `analysis.colors.series_key`: one line
    per method, the mean over its seeds with their min-max band, in colours that tell the labels
    apart), test/acc and the Grad-CAM consistency against sparsity: nothing to click first."""
    _, runs = sweep
    parent = runs["parent"].info.run_id
    labels = {runs[name].data.tags[record.LABEL] for name in LINEAGES}
    key = series_key(labels)
    assert all(runs[name].data.tags[key] == runs[name].data.tags[record.LABEL] for name in LINEAGES)
    browser.get(comparison_url(ui.url, runs["experiment_id"], parent))
    close_assistant(browser)
    wait_for(browser, by_xpath(f'//*[contains(normalize-space(), {xpath_literal(f"Group by: {key}")})]'),
             f"the runs grouped by {key}", ARTIFACTS)
    for name in LINEAGES:
        label = runs[name].data.tags[record.LABEL]
        wait_for(browser, by_xpath(f'//*[normalize-space()={xpath_literal(f"Group: {label}")}]'), f"the group {label}", ARTIFACTS)
        wait_for(browser, by_xpath(link_to_run(runs[name].info.run_id, name)), f"lineage {name!r} in its group", ARTIFACTS)
    assert not by_xpath(link_to_run(runs[TRUNK].info.run_id, TRUNK))(browser), "the view shows the trunk too"
    # Exactly the lineages: not the parent run too (MLflow fetches it when ordering by start time),
    # so no group "Unassigned".
    wait_for(browser, by_xpath(f'//*[normalize-space()="{len(LINEAGES)} matching runs"]'), f"'{len(LINEAGES)} matching runs'", ARTIFACTS)
    assert not by_xpath('//*[normalize-space()="Group: Unassigned"]')(browser), "a group of runs without lth.label"
    for metric in CHART_METRICS:
        card = chart_card(browser, metric, f"the grouped {metric} chart")
        for name in LINEAGES:
            legend = f"{runs[name].data.tags[record.LABEL]} ({metric})"
            wait_for(browser, lambda d: legend in card.get_attribute("textContent"), f"the line {legend!r}", ARTIFACTS)
        xtitle = card.find_elements("css selector", ".g-xtitle")
        assert xtitle and xtitle[0].get_attribute("textContent").strip() == X_AXIS_METRIC, f"x axis of {metric}: {[t.get_attribute('textContent') for t in xtitle]}"
        assert card.size["width"] >= 560, f"the {metric} card is {card.size['width']} px wide"
    lines = {path.value_of_css_property("stroke") for path in browser.find_elements("css selector", ".js-line")}
    assert len(lines) >= len(labels), f"{len(labels)} methods drawn in {lines}: one colour each"
    screenshot(browser, "comparison_view")
