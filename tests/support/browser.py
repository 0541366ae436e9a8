"""A headless Chromium (Debian's package, driven by Selenium) and an `lth ui` server, for tests of
what a user sees in MLflow's UI.

Chromium and its driver come from Debian's packages (`chromium`, `chromium-driver`), installed with
apt-get if missing; no tool downloads a browser. Failing to install or start either raises
`BrowserSetupError`: a test that needs the browser must fail, not skip, when it cannot have one.

MLflow's UI is a React app: nothing is there when the page loads, so every look-up waits
(`wait_for`), and a look-up that times out saves the page (PNG, HTML, text) next to the screenshots
and fails with the page's URL and where the dump is.

Selenium is imported inside the functions, so that collecting the tests (`pytest -m "not slow"`)
does not need it.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from deploy.local_mlflow_server import APT_ENV, free_port, run_command

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
APT_PACKAGES = ["chromium", "chromium-driver"]
# Root needs --no-sandbox; without the background-networking flags Chromium hangs on a closed network.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class BrowserSetupError(RuntimeError):
    """Chromium, its driver or the MLflow UI could not be installed or started."""


def _apt_get(command: list[str], what: str) -> None:
    run_command(command, what, env={**os.environ, **APT_ENV}, timeout=900, error=BrowserSetupError)


def ensure_chromium() -> float:
    """Installs Debian's chromium and chromium-driver if either is missing; returns the seconds
    it took (0 if both were there)."""
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return 0.0
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BrowserSetupError(
            f"{CHROMIUM} or {CHROMEDRIVER} is missing and cannot be installed: needs root and apt-get "
            f"(apt-get install {' '.join(APT_PACKAGES)})"
        )
    start = time.monotonic()
    _apt_get(["apt-get", "update"], "apt-get update")
    _apt_get(["apt-get", "install", "-y", *APT_PACKAGES], f"apt-get install {' '.join(APT_PACKAGES)}")
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        raise BrowserSetupError(f"apt-get installed {' '.join(APT_PACKAGES)} but {missing} are not there")
    return time.monotonic() - start


def start_chrome(log: Path, width: int = 1600, height: int = 1000):
    """A headless Chromium with a new empty profile (deleted by `quit_chrome`); chromedriver's log
    goes to `log`."""
    # Selenium Manager must not look for (or download) a browser or a driver: both paths are given.
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="lth-chromium-profile-"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    log.parent.mkdir(parents=True, exist_ok=True)
    service = Service(CHROMEDRIVER, log_output=str(log))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as error:
        shutil.rmtree(profile, ignore_errors=True)
        raise BrowserSetupError(f"headless Chromium did not start: {error.msg}\n(see {log})") from None
    driver.set_page_load_timeout(60)
    driver.profile_dir = profile
    return driver


def quit_chrome(driver) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.profile_dir, ignore_errors=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60]


def dump_page(driver, stem: Path) -> Path:
    """The page as PNG, HTML and visible text (`stem`.png/.html/.txt), to see what the UI showed."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(stem.with_suffix(".png")))
    stem.with_suffix(".html").write_text(driver.page_source)
    stem.with_suffix(".txt").write_text(driver.execute_script("return document.body ? document.body.innerText : ''"))
    return stem


def wait_for(driver, find: Callable, what: str, dump_dir: Path, timeout: float = 45):
    """Polls `find(driver)` until it returns something truthy and returns that; on timeout dumps
    the page and fails naming `what`."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: find(d) or False
        )
    except TimeoutException:
        stem = dump_page(driver, dump_dir / f"mlflow_ui_failed_{_slug(what)}")
        text = stem.with_suffix(".txt").read_text()
        raise AssertionError(
            f"MLflow UI: {what} not shown within {timeout:.0f} s at {driver.current_url}\n"
            f"page saved as {stem}.png/.html/.txt; its text begins:\n{text[:1500]}"
        ) from None


def by_xpath(xpath: str) -> Callable:
    from selenium.webdriver.common.by import By

    return lambda d: [e for e in d.find_elements(By.XPATH, xpath) if e.is_displayed()]


def by_css(css: str) -> Callable:
    from selenium.webdriver.common.by import By

    return lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]


def xpath_literal(text: str) -> str:
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return "concat(" + ", '\"', ".join(f'"{part}"' for part in text.split('"')) + ")"


def js_click(driver, element) -> None:
    """A click that no overlay can intercept (MLflow draws icons over its radio buttons)."""
    driver.execute_script("arguments[0].click();", element)


def assert_nontrivial_png(path: Path, min_width: int = 800, min_height: int = 500, min_colours: int = 64) -> tuple[int, int]:
    """A real PNG of at least min_width x min_height with at least min_colours colours, and not one
    flat background: at least 3% of its pixels differ from the most common colour."""
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    assert width >= min_width and height >= min_height, f"{path}: {width}x{height} is smaller than {min_width}x{min_height}"
    colours = rgb.getcolors(maxcolors=1 << 20) or []
    assert not colours or len(colours) >= min_colours, f"{path}: only {len(colours)} colours, an (almost) blank image"
    if colours:
        commonest = max(count for count, _ in colours)
        assert commonest <= 0.97 * width * height, f"{path}: {commonest / (width * height):.1%} of it is one colour"
    return width, height


@dataclass
class MlflowUi:
    """`lth ui --port P` started in `workdir`, so it serves the store `lth` uses there by default."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "lth-ui.log"

    def command(self) -> list[str]:
        lth = Path(sys.executable).with_name("lth")
        base = [str(lth)] if lth.exists() else [sys.executable, "-m", "lth_sweep.orchestrator.cli"]
        return [*base, "ui", "--host", "127.0.0.1", "--port", str(self.port)]

    def start(self, timeout: float = 120) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_TRACKING_")}
        # The venv's mlflow first on the PATH; no telemetry from a test; no job runner: MLflow 3.17
        # starts eight more Python processes for its GenAI jobs, which nothing here uses.
        env |= {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrowserSetupError(f"`lth ui` exited with {self.process.returncode}:\n{self.log.read_text()[-5000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise BrowserSetupError(f"`lth ui` not healthy at {self.url} after {timeout:.0f} s:\n{self.log.read_text()[-5000:]}")

    def stop(self) -> None:
        """Stops `lth ui` and everything it started (mlflow, uvicorn): its own process group."""
        if self.process is None:
            return
        group = self.process.pid
        try:
            os.killpg(group, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.process.poll()
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)


def close_assistant(driver) -> None:
    """MLflow 3.17 opens its "MLflow Assistant" panel on a quarter of the window; close it."""
    for button in by_css('button[data-component-id="mlflow.assistant.chat_panel.close"]')(driver):
        js_click(driver, button)
