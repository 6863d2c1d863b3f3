"""The first-time user's journey in a real headless Chromium: start the app (which starts its own worker and
registers the demo), train a tiny run, wait for it, review, reload, export. Screenshots of every page go to
test-artifacts/e2e/ (git-ignored): along the way, and of every page once more at the end (journey_screenshots)."""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sqlalchemy import select

from dashboard.seed import seed_run
from db.models import Review
from db.session import open_database

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TRAINING_BUDGET_S = 300  # a 2-epoch run on the demo takes about a minute on 2 busy cores

NO_CHROMIUM = "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; ./test.sh does it as root)"
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not CHROMIUM.exists(), reason=NO_CHROMIUM)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_app(data_dir: Path, log: Path, *flags: str, **env: str) -> Iterator[str]:
    """`streamlit run streamlit_app.py` on a free port (with extra `flags`); yields its URL; stops it and its
    worker afterwards. The address comes from .streamlit/config.toml, as with ./start.sh, unless `flags` say."""
    with streamlit_script(ROOT / "streamlit_app.py", data_dir, log, *flags, **env) as url:
        yield url


@contextmanager
def streamlit_script(script: Path, data_dir: Path, log: Path, *flags: str, **env: str) -> Iterator[str]:
    """`streamlit run script` from the repository root (so with its .streamlit/config.toml); see streamlit_app."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
               "--server.port", str(port), "--browser.gatherUsageStats", "false", *flags]  # fmt: skip
    environment = {**os.environ, "CON2_DATA_DIR": str(data_dir), **env}
    environment.pop("CON2_DATABASE_URL", None)
    with open(log, "wb") as output:
        # its own process group: the local worker the app starts is in it too, so both stop together
        server = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start; see {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        time.sleep(1)
        try:
            os.killpg(server.pid, signal.SIGKILL)  # the worker, if it outlived the server
        except ProcessLookupError:
            pass


@contextmanager
def browser_context(height: int = 1000) -> Iterator:
    """A headless Chromium (Debian's) context 1400 px wide; closed afterwards."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_context(viewport={"width": 1400, "height": height}, accept_downloads=True)
        finally:
            browser.close()


@contextmanager
def browser_page(height: int = 1000) -> Iterator:
    with browser_context(height) as context:
        yield context.new_page()


@contextmanager
def seeded_review_app(tmp_path: Path, samples: int) -> Iterator[tuple[str, str, list[int]]]:
    """The app on a seeded database (dashboard.seed: a finished synthetic run) with no worker, so every row in
    the reviews table comes from the clicks under test; yields (url, database url, scored sample ids by rank)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database = f"sqlite:///{data_dir / 'con2.db'}"
    seeded = seed_run(database, samples=samples)
    with streamlit_app(data_dir, tmp_path / "streamlit.log", CON2_WORKER="off", CON2_REVIEWER="e2e") as url:
        yield url, database, seeded.scored_ids


def stored_reviews(database: str) -> list[Review]:
    """Every row of the reviews table, oldest first, read through a connection of its own."""
    sessions = open_database(database)
    try:
        with sessions() as session:
            return list(session.scalars(select(Review).order_by(Review.id)))
    finally:
        sessions.kw["bind"].dispose()


def screenshot(page, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main container, so grow the viewport to fit it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate(
        "() => Math.max(1000, ...Array.from(document.querySelectorAll('[data-testid=stMain]'))"
        ".map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, 8000)})
    settle(page)  # a taller viewport brings lazily drawn elements (thumbnails, buttons) into view: let them draw
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def settle(page) -> None:
    """Wait until Streamlit has finished the current script run: the app's own script-state attribute. (Until
    2026-12-04 this looked for 'Running' in the status widget's text, which Streamlit 1.67 no longer writes
    there, so it never waited.)"""
    page.wait_for_selector("[data-testid=stMain]")
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=60_000)


def open_page(page, url: str, path: str) -> None:
    page.goto(f"{url}/{path}")
    settle(page)


def drawn(page) -> None:
    """Wait until the script run has ended and every element has drawn: an element whose code the browser is
    still loading shows a grey placeholder (stSkeleton) after the run has ended."""
    settle(page)
    page.wait_for_function("() => !document.querySelector('[data-testid=stMain] [data-testid=stSkeleton]')",
                           timeout=60_000)  # fmt: skip


# Every page of the app as streamlit_app.py routes it: (URL path, st.title), in the sidebar's order.
PAGES = (("", "Data"), ("train", "Train"), ("runs", "Runs"), ("explore", "Explore"), ("review", "Review"),
         ("evaluate", "Evaluate"))  # fmt: skip


def journey_screenshots(page, url: str, journey: str) -> None:
    """At the end of a journey, every page as that journey left the app: `<journey>-end-<page>.png` each, once the
    page has drawn its title and with no exception on it. Reuses whatever state the journey built."""
    sync_api = pytest.importorskip("playwright.sync_api")
    for path, title in PAGES:
        open_page(page, url, path)
        heading = page.locator("[data-testid=stMain] h1").first
        sync_api.expect(heading).to_have_text(title, timeout=60_000)
        settle(page)
        drawn(page)
        screenshot(page, f"{journey}-end-{title.lower()}")
        errors = page.locator("[data-testid=stException]")
        assert errors.count() == 0, f"{journey}: the {title} page shows an exception:\n{errors.first.inner_text()}"


def test_first_time_user_from_nothing_to_an_exported_review(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    data_dir = tmp_path / "data"
    # One OpenMP thread for the app's worker: on a shared 2-core CI machine two spinning threads against a
    # busy neighbour train ~20x slower (measured 10 vs 312 images/s); the journey, not the speed, is under test.
    app = streamlit_app(data_dir, tmp_path / "streamlit.log", CON2_REVIEWER="e2e", OMP_NUM_THREADS="1")
    with app as url, browser_page() as page:
        # Data: the bundled demo is registered on first start (by the app's own worker)
        open_page(page, url, "")
        page.get_by_text("1,797", exact=True).wait_for(timeout=120_000)  # the page refreshes when the worker is done
        page.get_by_text("equalize", exact=True).first.wait_for(timeout=60_000)  # the context gallery
        settle(page)
        screenshot(page, "1-data")
        # Data draws no chart, yet the tab fetches Plotly's code while idle, for its first chart page
        # (dashboard/preload.py)
        assert page.locator(".js-plotly-plot").count() == 0
        page.wait_for_function(
            "() => performance.getEntriesByType('resource').some((e) => e.name.includes('/PlotlyChart.'))",
            timeout=30_000,
        )
        # Curator: the cleaned list downloads as a manifest that --data and the Data page read back
        with page.expect_download(timeout=60_000) as download_info:
            page.get_by_role("button", name="Kept files (CSV)").click()
        kept = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
        # every digit is kept: no verdicts yet, and of each exact-duplicate group one stays (the digits have none)
        digits = load_digits().images
        assert list(kept[0]) == ["path", "label", "split", "key"]
        assert len(kept) == len(np.unique(digits.reshape(len(digits), -1), axis=0))
        assert {row["label"] for row in kept} == set("0123456789")

        # Train: a tiny run (2 epochs, 2 test-time views) from the form, then watch it live
        open_page(page, url, "train")
        page.get_by_role("spinbutton", name="Epochs").fill("2")
        page.get_by_role("spinbutton", name="Test-time views (A)").fill("2")
        page.get_by_role("button", name="Queue training run").click()
        page.get_by_text("Queued run #").wait_for(timeout=30_000)
        page.get_by_text("running", exact=True).first.wait_for(timeout=60_000)
        screenshot(page, "2-train-running")
        page.get_by_text("finished: scored").wait_for(timeout=TRAINING_BUDGET_S * 1000)
        screenshot(page, "3-train-finished")

        open_page(page, url, "runs")
        page.locator("[data-testid=stDataFrame]").first.wait_for()
        screenshot(page, "4-runs")

        open_page(page, url, "explore")
        page.locator(".js-plotly-plot canvas").first.wait_for(timeout=60_000)
        page.get_by_text("Lines", exact=True).click()
        settle(page)
        screenshot(page, "5-explore")

        open_page(page, url, "evaluate")
        page.get_by_text("AUROC S_NND").first.wait_for()
        screenshot(page, "6-evaluate")

        # Review: a note, then a verdict, on the most anomalous sample; each saved at once, kept after a reload
        open_page(page, url, "review")
        first_row = page.locator("[class*='st-key-review_row_']").first
        first_row.get_by_role("textbox").fill("looks odd")
        first_row.get_by_role("textbox").press("Tab")
        page.get_by_text("Saved the note for").first.wait_for(timeout=30_000)
        page.reload()
        settle(page)
        first_row = page.locator("[class*='st-key-review_row_']").first
        sync_api.expect(first_row.get_by_role("textbox")).to_have_value("looks odd", timeout=30_000)
        first_row.get_by_role("button", name="anomaly", exact=True).click()
        page.get_by_text("Saved: anomaly").first.wait_for(timeout=30_000)
        page.reload()
        settle(page)
        first_row = page.locator("[class*='st-key-review_row_']").first
        first_row.get_by_text("anomaly · e2e ·").wait_for(timeout=30_000)
        sync_api.expect(first_row.get_by_role("textbox")).to_have_value("looks odd", timeout=30_000)
        screenshot(page, "7-review")

        # Export the reviewed list as CSV
        with page.expect_download(timeout=60_000) as download_info:
            page.get_by_role("button", name="Export CSV").click()
        path = download_info.value.path()
        rows = list(csv.DictReader(io.StringIO(Path(path).read_text())))
        assert len(rows) == 1
        assert (rows[0]["rank"], rows[0]["verdict"], rows[0]["note"], rows[0]["reviewer"]) == (
            "1", "anomaly", "looks odd", "e2e"
        )  # fmt: skip
        assert rows[0]["location"].startswith("sklearn digits[") and rows[0]["reviewed_at"].endswith("UTC")
        (ARTIFACTS / "review-export.csv").write_text(Path(path).read_text())

        journey_screenshots(page, url, "analyst")
