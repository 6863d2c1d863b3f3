"""Verdicts in a real headless Chromium: two tabs clicking fast lose nothing, a locked database delays a verdict
without losing it or showing a traceback, and a note holding an image link is shown as text, never fetched.

The app runs on a seeded database (dashboard.seed: a finished synthetic run) with no worker, so every row in
the reviews table comes from the clicks under test. Screenshots go to test-artifacts/e2e/ (git-ignored).
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from test_dashboard_e2e import (
    ARTIFACTS,
    CHROMIUM,
    NO_CHROMIUM,
    browser_context,
    seeded_review_app,
    settle,
    stored_reviews,
)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not CHROMIUM.exists(), reason=NO_CHROMIUM)]

VERDICTS = ("anomaly", "normal", "unsure")
CLICKS_PER_S = 5.0  # both tabs together, alternating
LOCK_S = 30.0


@pytest.fixture
def review_app(tmp_path):
    """The app on a seeded run (no worker: nothing else writes); yields (url, database url, sample ids by rank)."""
    with seeded_review_app(tmp_path, samples=120) as app:
        yield app


@pytest.fixture
def browser():
    with browser_context(height=4000) as context:  # tall enough for a whole page of the queue: no click scrolls
        yield context


def rows_drawn(page) -> None:
    """Wait until the whole first page of the queue is drawn (rows stream in; a row's buttons come after it)."""
    settle(page)
    page.locator("[class*='st-key-review_note_'] input").nth(19).wait_for(timeout=120_000)


def open_review(context, url: str):
    page = context.new_page()
    page.goto(f"{url}/review")
    rows_drawn(page)
    return page


def no_traceback(page) -> None:
    assert page.locator("[data-testid=stException]").count() == 0
    assert "Traceback" not in page.locator("[data-testid=stMain]").inner_text()


def test_two_tabs_clicking_five_times_a_second_lose_no_verdict_and_no_note(review_app, browser):
    url, database, ranked = review_app
    tabs = [open_review(browser, url), open_review(browser, url)]
    # Verdicts on the top 15 rows, notes on the next 5: a note is then never carried by a verdict clicked in
    # the same rerun (which would store it with the verdict instead of as a row of its own).
    verdict_rows, note_rows = ranked[:15], ranked[15:20]
    actions = []  # (tab, kind, sample id, verdict or note text), in click order
    for i in range(60):
        for t in range(2):
            if i % 6 == 5:  # every sixth action of a tab is a note: 10 notes per tab
                sample = note_rows[(i // 6 + 2 * t) % len(note_rows)]
                actions.append((t, "note", sample, f"tab {t} note {i // 6}: ![x](http://127.0.0.1:9/x.png)"))
            else:
                sample = verdict_rows[(i + 7 * t) % len(verdict_rows)]
                verdict = VERDICTS[(i // len(verdict_rows) + t) % len(VERDICTS)]
                actions.append((t, "verdict", sample, verdict))
    assert sum(a[1] == "verdict" for a in actions) == 100 and sum(a[1] == "note" for a in actions) == 20
    started = datetime.now(UTC)
    begin = time.monotonic()
    for n, (t, kind, sample, value) in enumerate(actions):
        # the two tabs alternate; action n is due at n / CLICKS_PER_S seconds
        wait = begin + n / CLICKS_PER_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        page = tabs[t]
        if kind == "verdict":
            # A DOM click event on the button, through the app's own click handler. Playwright's mouse click
            # first waits for the page to stand still and scrolls, which on a busy 2-core machine caps it
            # near one click a second; a reviewer clicking at this pace does not wait for reruns either.
            page.locator(f".st-key-review_verdict_{sample}_{value} button").dispatch_event("click")
        else:
            field = page.locator(f".st-key-review_note_{sample} input")
            field.fill(value, force=True)
            field.press("Tab")
    elapsed = time.monotonic() - begin
    rate = len(actions) / elapsed
    for page in tabs:
        settle(page)
    deadline = time.monotonic() + 60  # reruns queued behind the clicks finish their writes
    while time.monotonic() < deadline:
        rows = stored_reviews(database)
        if len(rows) >= len(actions):
            break
        time.sleep(1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tabs[0].screenshot(path=str(ARTIFACTS / "review-fast-clicks.png"))
    finished = datetime.now(UTC)
    verdict_rows_db = [r for r in rows if r.verdict is not None]
    note_rows_db = [r for r in rows if r.verdict is None]
    print(f"clicks per second: {rate:.2f}; verdict rows {len(verdict_rows_db)}, note rows {len(note_rows_db)}")
    # The pace is printed, not asserted: the clicks are dispatched on a fixed schedule without waiting for the
    # page, but a shared 2-core machine slows the browser itself (3.7 a second was measured under load). What
    # must hold at any pace is below: not one verdict or note lost, none stored twice.
    assert len(verdict_rows_db) == 100 and len(note_rows_db) == 20
    expected = sorted((s, v) for _, kind, s, v in actions if kind == "verdict")
    assert sorted((r.sample_id, r.verdict) for r in verdict_rows_db) == expected
    expected_notes = sorted((s, v) for _, kind, s, v in actions if kind == "note")
    assert sorted((r.sample_id, r.note) for r in note_rows_db) == expected_notes
    assert all(r.reviewer == "e2e" and started <= r.created_at <= finished for r in rows)
    for page in tabs:
        no_traceback(page)
        assert page.locator("img[src*='127.0.0.1:9']").count() == 0  # the notes' image links stayed text


LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
print("released", flush=True)
"""


def test_a_verdict_clicked_while_another_process_locks_the_database_is_saved_when_the_lock_goes(review_app, browser):
    url, database, ranked = review_app
    page = open_review(browser, url)
    path = database.removeprefix("sqlite:///")
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, path, str(LOCK_S)], stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        # the same DOM click as in the fast-click test; a busy machine draws a row's buttons late
        page.locator(f".st-key-review_verdict_{ranked[0]}_anomaly button").dispatch_event("click", timeout=120_000)
        # "1 click waiting" is the status line's alone (the page's caption also mentions "saving…")
        page.get_by_text("Saving… 1 click waiting").wait_for(timeout=30_000)
        page.get_by_text("Retrying every second").wait_for(timeout=5_000)
        # in the clicked row (the case under the cursor, above the rows, shows the same sample and caption)
        page.locator(f".st-key-review_row_{ranked[0]}").get_by_text("anomaly · saving…").wait_for(timeout=5_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "review-locked-saving.png"))
        no_traceback(page)
        assert stored_reviews(database) == []  # not written yet: the lock holds (readers still read, WAL)
        # an ordering, not a stopwatch: the page answered while the other process still held the lock
        assert locker.poll() is None, "the page only answered once the lock was gone"
        # a rerun while the verdict waits (another widget) keeps it waiting, not lost
        page.get_by_text("Unreviewed", exact=True).click()
        settle(page)
        page.get_by_text("Saving… 1 click waiting").wait_for(timeout=30_000)
        no_traceback(page)
        assert locker.wait(timeout=LOCK_S + 10) == 0
    finally:
        if locker.poll() is None:
            locker.kill()
    page.get_by_text("Saving… 1 click waiting").wait_for(state="detached", timeout=30_000)
    rows = stored_reviews(database)
    assert [(r.sample_id, r.verdict, r.reviewer) for r in rows] == [(ranked[0], "anomaly", "e2e")]
    page.get_by_text("All", exact=True).click()
    rows_drawn(page)
    page.locator(f".st-key-review_row_{ranked[0]}").get_by_text("anomaly · e2e ·").wait_for(timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "review-locked-saved.png"))
    no_traceback(page)


class _Counting(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        type(self).requests.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_note_with_an_image_link_and_html_is_shown_as_text_and_never_fetched(review_app, browser):
    url, database, ranked = review_app
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bait = f"http://127.0.0.1:{server.server_address[1]}"
    note = f'see ![scan]({bait}/md.png) and <img src="{bait}/html.png"> *now*'
    try:
        page = open_review(browser, url)
        field = page.locator(f".st-key-review_note_{ranked[0]} input")
        field.fill(note)
        field.press("Enter")
        page.get_by_text("Saved the note for").first.wait_for(timeout=30_000)
        page.locator(f".st-key-review_verdict_{ranked[0]}_anomaly button").dispatch_event("click", timeout=120_000)
        page.get_by_text("Saved: anomaly").first.wait_for(timeout=30_000)
        page.reload()
        rows_drawn(page)
        page.locator(f".st-key-review_open_{ranked[0]} button").dispatch_event("click", timeout=120_000)
        dialog = page.get_by_role("dialog")  # the case view shows the note
        dialog.get_by_text(f"Note: {note}", exact=True).wait_for(timeout=30_000)
        page.wait_for_timeout(2000)  # time for any image the page holds to be requested
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "review-note-as-text.png"))
        assert _Counting.requests == []
        assert page.locator(f"img[src^='{bait}']").count() == 0
        no_traceback(page)
    finally:
        server.shutdown()
    assert [r.note for r in stored_reviews(database)] == [note, note]
