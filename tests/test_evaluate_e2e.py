"""Evaluate and the empty states in a real headless Chromium (issue 12): runs of two normal classes on one
dataset are compared only within their class, every run says what it is, a dataset not read yet says what
happens next instead of showing zeros, and Streamlit's Deploy button is nowhere (client.toolbarMode)."""

from __future__ import annotations

import re

import pytest

from dashboard.seed import seed_other_run, seed_run
from tests.test_dashboard_e2e import (
    CHROMIUM,
    NO_CHROMIUM,
    browser_page,
    journey_screenshots,
    open_page,
    screenshot,
    settle,
    streamlit_app,
)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not CHROMIUM.exists(), reason=NO_CHROMIUM)]


def no_deploy_button(page) -> None:
    """The toolbar Streamlit shows a developer on localhost holds a Deploy button; this app hides it."""
    page.locator("[data-testid=stToolbar]").first.wait_for(state="attached", timeout=30_000)
    assert page.locator("[data-testid=stAppDeployButton]").count() == 0
    assert page.get_by_role("button", name="Deploy").count() == 0


def pick(page, combobox: str, option: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    box = page.get_by_role("combobox", name=combobox, exact=True)
    box.click()
    page.get_by_role("option").filter(has_text=option).first.click()
    sync_api.expect(box).to_have_value(option, timeout=30_000)
    settle(page)


def test_evaluate_compares_runs_of_one_normal_class_in_a_browser(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'con2.db'}"
    seeded = seed_run(url, samples=200)
    simclr = seed_other_run(url, seeded.dataset_id, normal="0", method="simclr", seed=2)
    seed_other_run(url, seeded.dataset_id, normal="3", seed=3)
    con2_label = f"#{seeded.run_id} synthetic · con2/invert · normal 0"
    simclr_label = f"#{simclr} synthetic · simclr · normal 0"
    with streamlit_app(data_dir, tmp_path / "streamlit.log", CON2_WORKER="off") as app, browser_page() as page:
        open_page(page, app, "evaluate")
        page.get_by_text("AUROC S_NND").first.wait_for()
        no_deploy_button(page)
        group = page.get_by_role("combobox", name="Dataset and normal class", exact=True)
        sync_api.expect(group).to_have_value("synthetic · normal 3 · 1 run")
        page.get_by_text("No other finished run on this dataset with this normal class").wait_for()

        pick(page, "Dataset and normal class", "synthetic · normal 0 · 2 runs")
        run = page.get_by_role("combobox", name="Run", exact=True)
        sync_api.expect(run).to_have_value(simclr_label, timeout=30_000)  # once the rerun the pick started has drawn
        legend = page.locator(".js-plotly-plot .legend").last
        sync_api.expect(legend).to_contain_text(re.compile(re.escape(f"{con2_label} (AUROC 0.")), timeout=30_000)
        sync_api.expect(legend).to_contain_text(f"{simclr_label} (AUROC 0.")
        text = page.locator("[data-testid=stMain]").inner_text()
        assert "simclr/" not in text and "normal 3 (AUROC" not in text  # one class only, SimCLR without a context
        screenshot(page, "evaluate-two-normal-classes")
        # The instructor's journey ends here, Con2 and SimCLR compared on one class: every page as it leaves them
        journey_screenshots(page, app, "instructor")


def test_a_dataset_not_read_yet_says_what_happens_next(tmp_path):
    """No worker (CON2_WORKER=off): the demo's registration stays queued. The Data page says so once, with no
    'every image could be read' beside zero images; Evaluate says what to do to get a run there."""
    data_dir = tmp_path / "data"
    with streamlit_app(data_dir, tmp_path / "streamlit.log", CON2_WORKER="off") as app, browser_page() as page:
        open_page(page, app, "")
        page.get_by_text("This dataset has not been read yet").wait_for(timeout=60_000)
        page.get_by_text("queued: next in line, waiting for the worker to take it").wait_for()
        no_deploy_button(page)
        text = page.locator("[data-testid=stMain]").inner_text()
        assert "Every image could be read" not in text and "Nothing counted yet" not in text
        assert page.locator("[data-testid=stMetric]").count() == 0  # no "Images 0", "Unreadable 0"
        screenshot(page, "data-not-read-yet")

        open_page(page, app, "evaluate")
        page.get_by_text("No finished run with labels yet. On the Train page").wait_for(timeout=30_000)
        screenshot(page, "evaluate-empty")
