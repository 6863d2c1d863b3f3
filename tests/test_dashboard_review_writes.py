"""Every verdict and note click on the Review page is stored: when a newer click interrupts its callback, when
another process holds the database's write lock, and when a write is retried. Through Streamlit's AppTest
against a seeded SQLite database (no worker). The real-browser versions are in test_review_e2e.py."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.runtime.scriptrunner import RerunData, ScriptRunner
from streamlit.runtime.scriptrunner_utils.script_run_context import RunLocation, ThreadState, get_script_run_ctx
from streamlit.testing.v1 import AppTest

from dashboard.seed import seed_run
from db.models import Review
from db.session import open_database

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
TIMEOUT = 90  # seconds per script run: the first imports torch; the original code waited 15 s on a lock


@pytest.fixture
def seeded(app_data_dir):
    data_dir = app_data_dir
    database = data_dir / "con2.db"
    return seed_run(f"sqlite:///{database}", samples=60), database


def review_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("dashboard/pages/review.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def stored(database) -> list[tuple]:
    sessions = open_database(f"sqlite:///{database}")
    with sessions() as session:
        rows = session.scalars(select(Review).order_by(Review.id))
        return [(r.sample_id, r.verdict, r.note, r.reviewer) for r in rows]


@pytest.fixture
def newer_click_during_callbacks(monkeypatch):
    """A newer click arrives while a widget callback runs: at the callback's first interrupt point (an `st.*`
    call or a session-state read) a rerun request is pending, as when the browser sends the next click."""
    handle = ScriptRunner._maybe_handle_execution_control_request
    arrived = []

    def with_a_newer_click(self) -> None:
        if self._is_in_script_thread() and ThreadState.get().run_location == RunLocation.CALLBACK:
            ctx = get_script_run_ctx()
            self._requests.request_rerun(RerunData(page_script_hash=ctx.page_script_hash))
            arrived.append(ctx.page_script_hash)
        handle(self)

    monkeypatch.setattr(ScriptRunner, "_maybe_handle_execution_control_request", with_a_newer_click)
    return arrived


def test_a_verdict_and_a_note_survive_a_newer_click_arriving_during_their_callbacks(
    seeded, newer_click_during_callbacks
):
    seeded_run, database = seeded
    top, second = seeded_run.scored_ids[:2]
    at = review_page()
    at.text_input(key=f"review_note_{top}").set_value("odd stroke")
    at.button(key=f"review_verdict_{top}_anomaly").click().run()
    at.text_input(key=f"review_note_{second}").input("blurred").run()
    assert not at.exception, [e.value for e in at.exception]
    assert stored(database) == [(top, "anomaly", "odd stroke", "ada"), (second, None, "blurred", "ada")]


def test_a_verdict_clicked_while_another_process_locks_the_database_waits_visibly_and_is_saved_after(seeded):
    seeded_run, database = seeded
    top = seeded_run.scored_ids[0]
    at = review_page()
    locker = sqlite3.connect(database, isolation_level=None)  # another connection: its own lock, as a process
    locker.execute("BEGIN EXCLUSIVE")
    try:
        at.button(key=f"review_verdict_{top}_anomaly").click().run()
        assert not at.exception, [e.value for e in at.exception]
        warning = " ".join(w.value for w in at.warning)
        assert "Saving… 1 click waiting: the database is busy" in warning and "Retrying every second" in warning
        assert "anomaly · saving…" in [c.value for c in at.caption]
        assert next(b for b in at.button if b.key == f"review_verdict_{top}_anomaly").proto.type == "primary"
        # another rerun while it waits (a filter changed): still waiting, still shown, no error
        at.segmented_control(key="review_show").set_value("Flagged").run()
        assert not at.exception and "Saving…" in " ".join(w.value for w in at.warning)
        assert locker.execute("SELECT count(*) FROM reviews").fetchone()[0] == 0
    finally:
        locker.execute("COMMIT")
        locker.close()
    time.sleep(1.5)  # the page tries a waiting write at most once a second
    at.segmented_control(key="review_show").set_value("All").run()  # any rerun retries what waits
    assert not at.exception, [e.value for e in at.exception]
    assert stored(database) == [(top, "anomaly", None, "ada")]
    assert not at.warning
    assert any(c.value.startswith("anomaly · ada ·") for c in at.caption)


def test_a_click_written_twice_is_stored_once(seeded):
    from dashboard import reviews
    from dashboard.outbox import ReviewWrite

    seeded_run, database = seeded
    top = seeded_run.scored_ids[0]
    click = ReviewWrite(top, seeded_run.run_id, "anomaly", "look again", "ada", datetime.now(UTC))
    assert reviews.write_review(click).startswith("Saved: anomaly for ")
    assert reviews.write_review(click).startswith("Saved: anomaly for ")  # a retry after an unclear failure
    again = ReviewWrite(top, seeded_run.run_id, "anomaly", "look again", "ada", datetime.now(UTC))
    reviews.write_review(again)  # the same verdict clicked again later is a click of its own
    assert stored(database) == [(top, "anomaly", "look again", "ada")] * 2
