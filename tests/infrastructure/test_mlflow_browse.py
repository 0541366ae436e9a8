"""What a user browsing MLflow's UI finds beyond metrics, after a tiny real sweep (real Ray Tune,
real MLflow on SQLite, the analysis actors on; `ui_sweep` in conftest.py, shared with
test_mlflow_ui.py) that is then run again (a finished sweep, read back
and summarised again): a lineage's data as dataset inputs with the data spec's id as digest, its
Grad-CAM grids as one image chart whose step slider walks from the trunk's grid (step 0) through
the rounds, and the sweep's summary as a table on the parent run. What the client can see is
asserted through MLflow's client; what the UI shows, in a headless Chromium (tests/support/browser.py).

Screenshots go to tests/artifacts/mlflow_browse_*.png; a look-up that fails also saves the page
there as mlflow_ui_failed_*.png/.html/.txt.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lth_sweep.analysis.actors import image_steps
from lth_sweep.orchestrator.summary import TABLE_COLUMNS
from tests.support.browser import (
    assert_nontrivial_png,
    by_css,
    by_xpath,
    close_assistant,
    quit_chrome,
    start_chrome,
    wait_for,
    xpath_literal,
)
from tests.support.ui_sweep import ARTIFACTS, UI_LINEAGES, UI_ROUNDS, UI_TRUNK
from lth_sweep.trainables import record

pytestmark = pytest.mark.slow

ML_VIEW = "workflowType=machine_learning"
ROUNDS, TRUNK = UI_ROUNDS, UI_TRUNK
LINEAGE = UI_LINEAGES[0]


@pytest.fixture(scope="module")
def sweep(ui_sweep):
    """(the sweep's folder, MLflow's client, runs by name + "parent" + "experiment_id", the data spec's id)"""
    client = MlflowClient(f"sqlite:///{ui_sweep.workdir / 'mlflow.db'}")
    return ui_sweep.workdir, client, {"experiment_id": ui_sweep.experiment_id, **ui_sweep.runs}, ui_sweep.data_id


@pytest.fixture
def browser(chromium):
    """A new headless Chromium for each test, tall enough for an image chart and its slider."""
    driver = start_chrome(ARTIFACTS / "mlflow_browse_chromedriver.log", height=1200)
    yield driver
    quit_chrome(driver)


def screenshot(driver, name: str) -> Path:
    time.sleep(0.5)  # let drawers and images finish their transition
    path = ARTIFACTS / f"mlflow_browse_{name}.png"
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    assert_nontrivial_png(path, min_width=1200, min_height=700)
    return path


def run_page(ui, runs: dict, name: str, tab: str = "") -> str:
    return f"{ui.url}/#/experiments/{runs['experiment_id']}/runs/{runs[name].info.run_id}{tab}?{ML_VIEW}"


def text_of(driver) -> str:
    return driver.execute_script("return document.body.innerText")


def test_a_lineage_lists_its_train_and_test_data_with_the_data_specs_id(browser, ui, sweep):
    _, client, runs, data_id = sweep
    for name in (TRUNK, LINEAGE):
        inputs = client.get_run(runs[name].info.run_id).inputs.dataset_inputs
        contexts = {entry.dataset.name: ({tag.key: tag.value for tag in entry.tags}["mlflow.data.context"], entry.dataset.digest) for entry in inputs}
        assert contexts == {"shapes": ("training", data_id), "shapes (test)": ("evaluation", data_id)}, name  # once, after two runs

    browser.get(run_page(ui, runs, LINEAGE))
    dataset = wait_for(browser, by_xpath(f'//*[normalize-space()={xpath_literal(f"shapes ({data_id})")}]'), "the lineage's dataset", ARTIFACTS)
    close_assistant(browser)
    assert "Training" in wait_for(browser, by_xpath('//*[normalize-space()="Datasets"]/..'), "the Datasets row", ARTIFACTS)[0].text
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", dataset[-1])
    screenshot(browser, "lineage_datasets")

    dataset[-1].click()  # a real click: the drawer opens on pointer events
    wait_for(browser, by_xpath('//*[starts-with(normalize-space(), "Data details for")]'), "the dataset drawer", ARTIFACTS)
    wait_for(browser, by_xpath(f'//*[normalize-space()={xpath_literal(f"shapes (test) ({data_id})")}]'), "the test split in the drawer", ARTIFACTS)
    wait_for(browser, lambda d: "images: 256" in text_of(d) and "classes: 9" in text_of(d), "the train split's profile", ARTIFACTS)
    assert "Evaluation" in text_of(browser)
    screenshot(browser, "lineage_dataset_drawer")


def image_card(driver):
    """The `gradcam` image chart on a run's model-metrics page, scrolled into view."""
    card = f'//*[@data-testid="experiment-view-compare-runs-card"][.//h4[@title={xpath_literal(record.GRADCAM_IMAGES)}]]'

    def find(d):
        found = by_xpath(card)(d)
        if not found:  # a section draws its charts only once it is on screen
            for header in d.find_elements("xpath", '//*[@data-testid="experiment-view-compare-runs-section-header"]'):
                d.execute_script("arguments[0].scrollIntoView({block: 'start'});", header)
        return found

    found = wait_for(driver, find, "the gradcam image chart", ARTIFACTS)[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", found)
    return found


def shown_steps(driver) -> list[tuple[int, int]]:
    """(step, decoded width) of every decoded image of the `gradcam` series on the page."""
    script = (
        "return [...document.images].filter(i => i.complete && i.naturalWidth > 0)"
        ".map(i => [decodeURIComponent(i.src), i.naturalWidth]);"
    )
    prefix = f"images/{record.GRADCAM_IMAGES}+step+"
    return [(int(src.split(prefix, 1)[1].split("+", 1)[0]), width) for src, width in driver.execute_script(script) if prefix in src]


def test_the_gradcam_image_slider_walks_from_the_trunk_through_the_rounds(browser, ui, sweep):
    from selenium.webdriver.common.keys import Keys

    _, client, runs, _ = sweep
    lineage = runs[LINEAGE].info.run_id
    assert image_steps(client, lineage) == set(range(ROUNDS + 1))
    assert image_steps(client, runs[TRUNK].info.run_id) == {0}
    pngs = [entry.path for entry in client.list_artifacts(lineage, "images") if entry.path.endswith(".png")]
    assert len(pngs) == ROUNDS + 1, pngs  # one per step, though the sweep ran twice
    artifacts = {entry.path for entry in client.list_artifacts(lineage, "xai")}
    assert {record.gradcam_grid(f"round_{r:02d}") for r in range(1, ROUNDS + 1)} <= artifacts

    browser.get(run_page(ui, runs, LINEAGE, "/model-metrics"))
    search = wait_for(browser, by_css('input[placeholder="Search metric charts"]'), "the chart search box", ARTIFACTS)[0]
    close_assistant(browser)
    search.send_keys(record.GRADCAM_IMAGES)
    card = image_card(browser)
    # The chart opens at step 0, the trunk's grid (its thumbnail: MLflow's 256 px WebP), though
    # MLflow lists every run parameter above it, hiding it below the card's edge.
    wait_for(browser, lambda d: (0, 256) in shown_steps(d), "the image of step 0 in the chart", ARTIFACTS)
    slider = card.find_elements("css selector", '[role="slider"]')[0]
    assert (slider.get_attribute("aria-valuemin"), slider.get_attribute("aria-valuemax")) == ("0", str(ROUNDS))

    # What a user does to see it and the last round: the chart's Configure dialog (a large preview
    # with the step slider), the step set, the run's parameters hidden.
    card.find_element("css selector", '[data-testid="experiment-view-compare-runs-card-menu"]').click()
    wait_for(browser, by_xpath('//*[@role="menuitem" and normalize-space()="Configure"]'), "the chart's Configure", ARTIFACTS)[0].click()
    dialog = wait_for(browser, by_css('[role="dialog"]'), "the Edit chart dialog", ARTIFACTS)[-1]
    wait_for(browser, lambda d: shown_steps(d).count((0, 256)) == 2, "the image of step 0 in the dialog", ARTIFACTS)
    screenshot(browser, "gradcam_dialog_step0")
    step = dialog.find_element("css selector", 'input[type="number"]')
    step.send_keys(Keys.CONTROL, "a")  # a React input: clear() leaves its value, and it takes the new one on blur
    step.send_keys(str(ROUNDS), Keys.TAB)
    wait_for(browser, lambda d: (ROUNDS, 256) in shown_steps(d), f"the image of step {ROUNDS} in the dialog", ARTIFACTS)
    dialog.find_element("css selector", '[data-component-id="mlflow.charts.image_grid_configure.show_run_params"] button').click()
    screenshot(browser, "gradcam_dialog_last_round")
    dialog.find_element("xpath", './/button[normalize-space()="Save changes"]').click()
    wait_for(browser, lambda d: not by_css('[role="dialog"]')(d), "the dialog closed", ARTIFACTS)
    card = image_card(browser)
    wait_for(browser, lambda d: shown_steps(d) == [(ROUNDS, 256)], f"only the image of step {ROUNDS} in the chart", ARTIFACTS)
    image = card.find_element("tag name", "img")
    inside = browser.execute_script(
        "const [c, i] = [arguments[0].getBoundingClientRect(), arguments[1].getBoundingClientRect()];"
        "return i.top >= c.top && i.bottom <= c.bottom && i.height > 50;", card, image,
    )
    assert inside, "the grid is not inside the chart card once the run parameters are hidden"
    screenshot(browser, "gradcam_chart_last_round")

    image.click()  # MLflow's preview: the full-size PNG
    wait_for(browser, lambda d: any(s == ROUNDS and width > 256 for s, width in shown_steps(d)), "the full-size grid", ARTIFACTS)
    screenshot(browser, "gradcam_preview_last_round")


def test_the_parent_run_shows_the_summary_as_a_table(browser, ui, sweep):
    workdir, client, runs, _ = sweep
    parent = runs["parent"].info.run_id
    text = Path(client.download_artifacts(parent, record.SUMMARY_TABLE, str(workdir / "downloaded"))).read_text()
    table = json.loads(text)
    assert "NaN" not in text and table["columns"] == list(TABLE_COLUMNS)
    rows = [dict(zip(table["columns"], values)) for values in table["data"]]
    assert sorted(row["name"] for row in rows) == sorted(UI_LINEAGES)  # one row per lineage, after two runs
    (row,) = [row for row in rows if row["name"] == LINEAGE]
    assert (row["name"], row["rounds"], row["run_id"]) == (LINEAGE, f"{ROUNDS}/{ROUNDS}", runs[LINEAGE].info.run_id)
    assert (row["winning_round"] is None or row["winning_round"] in range(1, ROUNDS + 1)) and row["winning"]
    assert abs(row["sparsity"] - 0.75) < 0.01
    for column in ("sparsity", "dense_acc", "last_acc", "delta_vs_dense", "gradcam_rho"):
        assert row[column] == round(row[column], 4), f"{column} = {row[column]} is not rounded"
    csv = Path(client.download_artifacts(parent, record.SUMMARY_CSV, str(workdir / "downloaded"))).read_text().splitlines()
    assert csv[0] == ",".join(TABLE_COLUMNS) and len(csv) == 1 + len(UI_LINEAGES)

    browser.get(run_page(ui, runs, "parent", f"/artifacts/{record.SUMMARY_TABLE}"))
    wait_for(browser, by_xpath('//*[normalize-space()="View as table"]'), "the table switch of the summary artifact", ARTIFACTS)
    close_assistant(browser)
    for header in ("name", "sparsity", "last_acc", "delta_vs_dense"):
        wait_for(browser, by_xpath(f'//*[@role="columnheader" or self::th][normalize-space()="{header}"]'), f"column {header}", ARTIFACTS)
    wait_for(browser, by_xpath(f'//*[@role="cell" or self::td][normalize-space()={xpath_literal(LINEAGE)}]'), "the lineage's row", ARTIFACTS)
    assert f"{row['last_acc']}" in text_of(browser)
    screenshot(browser, "parent_summary_table")
