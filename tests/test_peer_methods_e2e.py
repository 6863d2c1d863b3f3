"""Issue 13's peer methods from the browser: on the bundled demo, train CSI, self-OECL, FIRM and masked contrastive
learning from the Train form's method selector, let the app's real worker run all four, find their scores in the
database and their ROC and AUROC on the Evaluate page. Screenshots go to test-artifacts/e2e/ (git-ignored)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import pytest

from tests.test_dashboard_e2e import (
    CHROMIUM,
    NO_CHROMIUM,
    TRAINING_BUDGET_S,
    browser_page,
    open_page,
    screenshot,
    settle,
    streamlit_app,
)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not CHROMIUM.exists(), reason=NO_CHROMIUM)]
METHODS = ("csi", "self_oecl", "firm", "masked_contrastive")


def finished_runs(database: Path) -> dict[str, tuple[int, str, dict]]:
    """method → (job id, status, summary) of every train job that has ended, read straight from SQLite."""
    if not database.exists():
        return {}
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT id, status, config, summary FROM jobs WHERE kind = 'train' AND status IN ('succeeded', 'failed')"
        ).fetchall()
    out = {}
    for job_id, status, config, summary in rows:
        method = json.loads(config)["train"]["method"]
        out[method] = (job_id, status, json.loads(summary) if summary else {})
    return out


def queued_methods(database: Path) -> list[str]:
    """The method of every train job in the database, whatever its status."""
    if not database.exists():
        return []
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT config FROM jobs WHERE kind = 'train'").fetchall()
    return [json.loads(config)["train"]["method"] for (config,) in rows]


def queue(page, database: Path, method: str) -> None:
    """Pick `method` in the Train form's method selector, make the run tiny, queue it, and wait until the job is
    in the database (the previous run's "Queued run #" message is still on the page, so the text proves nothing;
    a click lost to a rerun under load is retried)."""
    for _ in range(3):
        page.get_by_role("combobox", name="Method", exact=True).click()
        page.get_by_role("option", name=method, exact=True).click()
        settle(page)
        page.get_by_role("spinbutton", name="Epochs").fill("1")
        page.get_by_role("spinbutton", name="Test-time views (A)").fill("1")
        page.get_by_role("button", name="Queue training run").click()
        deadline = time.monotonic() + 30
        while method not in queued_methods(database) and time.monotonic() < deadline:
            time.sleep(0.5)
        if method in queued_methods(database):
            return
    pytest.fail(f"the Train form did not queue {method} in three tries: {queued_methods(database)}")


def test_the_rotation_methods_train_from_the_form_and_are_evaluated(tmp_path):
    data_dir = tmp_path / "data"
    app = streamlit_app(data_dir, tmp_path / "streamlit.log", CON2_REVIEWER="e2e", OMP_NUM_THREADS="1")
    sync_api = pytest.importorskip("playwright.sync_api")
    with app as url, browser_page() as page:
        open_page(page, url, "")
        page.get_by_text("1,797", exact=True).wait_for(timeout=120_000)  # the demo, registered by the app's worker

        open_page(page, url, "train")
        # the form says what the peer methods assume, beside the selector, not only in its help tooltip
        page.get_by_text(
            re.compile(r"peer methods \(csi, self_oecl, firm, masked_contrastive\).*cell microscopy")
        ).wait_for()
        database = data_dir / "con2.db"
        for method in METHODS:
            queue(page, database, method)
        screenshot(page, "peer-1-train-queued")

        deadline = time.monotonic() + len(METHODS) * TRAINING_BUDGET_S  # one worker runs them one after another
        while set(finished_runs(database)) < set(METHODS) and time.monotonic() < deadline:
            time.sleep(2)
        ended = finished_runs(database)
        assert set(ended) >= set(METHODS), f"not finished in time: {ended}"
        for method in METHODS:
            job_id, status, summary = ended[method]
            assert status == "succeeded", (method, summary)
            with sqlite3.connect(database) as connection:
                scores = connection.execute(
                    "SELECT s_nnd, s_lh FROM scores WHERE job_id = ? AND role = 'scored'", (job_id,)
                ).fetchall()
            assert scores and all(s is not None and s == s for row in scores for s in row), method  # s == s: not NaN
            assert summary["auroc_nnd"] is not None and len(summary["history"]) == 1

        for method in METHODS:
            open_page(page, url, "evaluate")
            page.get_by_text("AUROC S_NND").first.wait_for()
            picker = page.get_by_role("combobox", name="Run", exact=True)
            picker.click()
            page.get_by_role("option").filter(has_text=f"· {method} ·").first.click()
            sync_api.expect(picker).to_have_value(re.compile(f"· {method} ·"), timeout=30_000)
            metric = page.locator("[data-testid=stMetric]").filter(has_text="AUROC S_NND").first
            # the page shows the run's stored AUROC, to three digits (once the rerun the pick started has drawn)
            shown = f"{ended[method][2]['auroc_nnd']:.3f}"
            sync_api.expect(metric.locator("[data-testid=stMetricValue]")).to_have_text(shown, timeout=30_000)
            settle(page)
            page.locator(".js-plotly-plot").first.wait_for()
            screenshot(page, f"peer-2-evaluate-{method}")
