"""Keyboard triage and bulk verdicts below the browser: the cursor the keys move, a verdict set kept with the
dataset, and a bulk verdict (Explore's box or lasso) written whole through the review outbox.
The browser versions are test_review_keys_e2e.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from dashboard.keyboard import Cursor, keys_help, next_after
from dashboard.outbox import Outbox, VerdictBatch
from dashboard.seed import seed_run
from db.models import Review
from db.session import DatabaseLocked, open_database

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
TIMEOUT = 90


def test_the_cursor_moves_along_the_queue_and_stops_at_its_ends():
    cursor = Cursor()
    ids = [7, 3, 9, 4]
    assert cursor.place(ids) == 7
    cursor.step(ids, 1)
    cursor.step(ids, 1)
    assert cursor.sample_id == 9
    cursor.step(ids, 20)
    assert cursor.sample_id == 4
    cursor.step(ids, -20)
    assert cursor.sample_id == 7
    assert cursor.place([3, 4]) == 3  # its sample left the queue (a filter): the queue's first


def test_a_verdict_moves_the_cursor_on_unless_a_key_moved_it_meanwhile():
    ids = [7, 3, 9]
    cursor = Cursor()
    cursor.place(ids)
    cursor.moved_on(7, next_after(ids, 7))
    assert cursor.sample_id == 3
    cursor.step(ids, 1)  # j pressed before the verdict on 3 was handled
    cursor.moved_on(3, next_after(ids, 3))
    assert cursor.sample_id == 9
    assert next_after(ids, 9) is None and next_after(ids, 99) is None
    cursor.moved_on(9, None)  # the end of the queue: it stays
    assert cursor.sample_id == 9


def test_the_page_of_rows_stays_while_the_cursor_moves_and_turns_only_when_asked():
    ids = list(range(100, 145))  # 45 samples: pages at 0, 20, 40
    cursor = Cursor()
    cursor.place(ids)
    assert cursor.page_start(ids, 20) == 0
    for _ in range(25):  # keys: the cursor walks off the page, the rows under the mouse stay
        cursor.step(ids, 1)
    assert cursor.sample_id == 125 and cursor.page_start(ids, 20) == 0
    cursor.turn_page(ids, 20, 1)
    assert (cursor.page_start(ids, 20), cursor.sample_id) == (20, 120)
    cursor.turn_page(ids, 20, 5)  # stops at the last page
    assert (cursor.page_start(ids, 20), cursor.sample_id) == (40, 140)
    cursor.turn_page(ids, 20, -9)
    assert (cursor.page_start(ids, 20), cursor.sample_id) == (0, 100)
    cursor.step(ids, 30)
    assert cursor.page_start(ids[1:], 20) == 20  # the page's first sample left the queue: the cursor's page
    assert cursor.page_start([99, *ids], 20) == 20  # a sample back before it: the page of 20 that holds it


def test_the_keys_are_listed_in_the_sets_order():
    assert keys_help(["remove", "keep", "relabel"]).startswith("`1` remove · `2` keep · `3` relabel · `j` next")


@pytest.fixture
def seeded(app_data_dir):
    url = f"sqlite:///{app_data_dir / 'con2.db'}"
    return seed_run(url, samples=60), url


def stored(url: str) -> list[tuple]:
    sessions = open_database(url)
    with sessions() as session:
        return [
            (r.sample_id, r.verdict, r.note, r.reviewer) for r in session.scalars(select(Review).order_by(Review.id))
        ]


def test_a_bulk_verdict_is_one_write_through_the_outbox_and_keeps_notes(seeded):
    from dashboard import reviews

    run, url = seeded
    lasso = run.scored_ids[:30]
    assert reviews.record_verdict(lasso[0], run.run_id, None, "smudge", "ada").startswith("Saved")
    tries = []

    def locked_once(item):
        tries.append(item)
        if len(tries) == 1:
            raise DatabaseLocked("busy")
        return reviews.write_review(item)

    box = Outbox(locked_once)
    box.add(VerdictBatch(tuple(lasso), run.run_id, "anomaly", "ada"))
    assert box.waiting_verdicts() == dict.fromkeys(lasso, "anomaly")  # waiting, shown as "saving…"
    assert stored(url) == [(lasso[0], None, "smudge", "ada")]
    box._failed_at = float("-inf")  # the retry interval has passed
    assert box.flush() == 0
    assert box.take_messages() == ["Saved: anomaly for 30 samples"]
    rows = stored(url)[1:]
    assert sorted(r[0] for r in rows) == sorted(lasso)
    assert {(r[1], r[3]) for r in rows} == {("anomaly", "ada")}
    assert [r[2] for r in rows if r[0] == lasso[0]] == ["smudge"]  # the note stayed


def test_the_verdict_set_chosen_on_the_review_page_is_kept_with_the_dataset(seeded):
    run, url = seeded
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("dashboard/pages/review.py").run()
    assert at.selectbox(key="review_verdicts").value == "anomaly / normal / unsure"
    at.selectbox(key="review_verdicts").set_value("remove / keep / relabel").run()
    assert not at.exception, [e.value for e in at.exception]
    reloaded = AppTest.from_file(APP, default_timeout=TIMEOUT).run()  # another visit, another session
    reloaded.switch_page("dashboard/pages/review.py").run()
    assert reloaded.selectbox(key="review_verdicts").value == "remove / keep / relabel"
    assert [b.label for b in reloaded.button if (b.key or "").startswith("review_triage_verdict_")] == [
        "remove", "keep", "relabel"
    ]  # fmt: skip
    reloaded.button(key="review_triage_verdict_keep").click().run()
    top = run.scored_ids[0]
    assert stored(url) == [(top, "keep", None, "ada")]


def test_keys_pressed_faster_than_the_page_redraws_judge_the_cases_in_turn(seeded):
    run, url = seeded
    top, second, third = run.scored_ids[:3]
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("dashboard/pages/review.py").run()
    # "1" then "2" before the page has drawn the next case: both presses reach one rerun, and each acts on the
    # case under the cursor when it is handled (the buttons were drawn for the top case only)
    at.button(key="review_triage_verdict_anomaly").click()
    at.button(key="review_triage_verdict_normal").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert stored(url) == [(top, "anomaly", None, "ada"), (second, "normal", None, "ada")]
    # the cursor moved on twice: the third case is the one shown
    assert any(m.value.startswith(f"**3 of {len(run.scored_ids)}** · rank #3 ·") for m in at.markdown)
    assert at.text_input(key=f"review_triage_note_{third}") is not None


def test_a_note_saved_in_the_case_is_kept_by_a_verdict_from_its_row_and_shows_in_its_history(seeded):
    run, url = seeded
    top = run.scored_ids[0]
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("dashboard/pages/review.py").run()
    at.text_input(key=f"review_triage_note_{top}").input("odd ring").run()  # Enter in the case's note field
    # the row's own note field still shows what it was drawn with (empty): the page never overwrites a field
    # the browser holds, and a verdict from the row then keeps the note the sample has
    at.button(key=f"review_verdict_{top}_normal").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert stored(url) == [(top, None, "odd ring", "ada"), (top, "normal", "odd ring", "ada")]
    assert "Note now: odd ring" in [c.value for c in at.caption]  # under the row's field, which shows its old text
    history = next(e for e in at.expander if e.label.startswith("Review history"))
    assert history.label == "Review history (2)"
    table = history.dataframe[0].value
    assert list(table["who"]) == ["ada", "ada"]
    assert list(table["verdict"]) == ["– → normal", ""]  # newest first: the verdict, then the note alone
    assert list(table["note"]) == ["", "odd ring"]
    assert any(c.value.startswith("note by ada ·") for c in at.caption)
