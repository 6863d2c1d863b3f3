"""Reviews are an append-only history: the latest is the verdict, nothing is ever overwritten."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, update
from sqlalchemy.exc import DBAPIError

from db import datasets, reviews
from db.models import Dataset, Review, Sample


@pytest.fixture
def sample_ids(sessions):
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location="digits")
        ids = datasets.upsert_samples(session=session, dataset_id=dataset.id, samples=[{"key": "a"}, {"key": "b"}])
        other = datasets.create_dataset(session=session, location="batch")
        other_ids = datasets.upsert_samples(session=session, dataset_id=other.id, samples=[{"key": "c"}])
    return ids["a"], ids["b"], other_ids["c"]


def test_the_latest_review_is_the_verdict_and_the_history_keeps_all(sessions, sample_ids):
    a, b, c = sample_ids
    with sessions.begin() as session:
        reviews.add_review(session=session, sample_id=a, verdict="remove", reviewer="ana", note=" blurry ")
        reviews.add_review(session=session, sample_id=a, verdict="keep", reviewer="ben")
        reviews.add_review(session=session, sample_id=c, verdict="anomalous", reviewer="ana")
    with sessions() as session:
        latest = reviews.latest_reviews(session=session, dataset_id=1)
        everything = reviews.latest_reviews(session=session)
        chosen = reviews.latest_reviews(session=session, sample_ids=[a, b])
        history = reviews.review_history(session=session, sample_id=a)
    assert {s: r.verdict for s, r in latest.items()} == {a: "keep"}
    assert {s: r.verdict for s, r in everything.items()} == {a: "keep", c: "anomalous"}
    assert list(chosen) == [a]
    assert [(r.verdict, r.reviewer, r.note) for r in history] == [("remove", "ana", "blurry"), ("keep", "ben", None)]
    assert history[0].created_at <= history[1].created_at and history[0].created_at.tzinfo is not None


def test_the_database_refuses_to_change_a_review(sessions, sample_ids):
    a, _, _ = sample_ids
    with sessions.begin() as session:
        reviews.add_review(session=session, sample_id=a, verdict="remove", reviewer="ana")
    with pytest.raises(DBAPIError, match="append-only"):
        with sessions.begin() as session:
            session.execute(update(Review).values(verdict="keep"))
    with sessions() as session:
        assert reviews.review_history(session=session, sample_id=a)[0].verdict == "remove"
    with sessions.begin() as session:  # deleting a whole sample (its dataset) still cascades
        session.execute(delete(Dataset).where(Dataset.id == session.get(Sample, a).dataset_id))
    with sessions() as session:
        assert reviews.review_history(session=session, sample_id=a) == []


def test_a_note_alone_is_kept_and_leaves_the_verdict_as_it_was(sessions, sample_ids):
    a, b, _ = sample_ids
    with sessions.begin() as session:
        reviews.add_review(session=session, sample_id=b, verdict=None, reviewer="ana", note="ask the radiologist")
        reviews.add_review(session=session, sample_id=a, verdict="remove", reviewer="ana", note="blurry")
        reviews.add_review(session=session, sample_id=a, verdict=None, reviewer="ben", note="blurry, and cropped")
    with sessions() as session:
        current = reviews.latest_reviews(session=session, sample_ids=[a, b])
    assert (current[b].verdict, current[b].reviewer, current[b].note) == (None, None, "ask the radiologist")
    assert (current[a].verdict, current[a].reviewer, current[a].note) == ("remove", "ana", "blurry, and cropped")
    assert current[a].noted_by == "ben" and current[a].noted_at >= current[a].reviewed_at
    with sessions.begin() as session:  # an empty note alone clears the note; the verdict stays
        reviews.add_review(session=session, sample_id=a, verdict=None, reviewer="ben", note="  ")
    with sessions() as session:
        cleared = reviews.latest_reviews(session=session, dataset_id=1)[a]
        assert (cleared.verdict, cleared.note) == ("remove", None)
        assert len(reviews.review_history(session=session, sample_id=a)) == 3


def test_a_review_needs_a_verdict_or_note_a_reviewer_and_a_sample(sessions, sample_ids):
    a, _, _ = sample_ids
    with sessions.begin() as session:
        with pytest.raises(ValueError, match="verdict cannot be blank"):
            reviews.add_review(session=session, sample_id=a, verdict=" ", reviewer="ana")
        with pytest.raises(ValueError, match="a verdict or a note"):
            reviews.add_review(session=session, sample_id=a, verdict=None, reviewer="ana", note=" ")
        with pytest.raises(ValueError, match="reviewer"):
            reviews.add_review(session=session, sample_id=a, verdict="keep", reviewer="")
        with pytest.raises(ValueError, match="no sample"):
            reviews.add_review(session=session, sample_id=999, verdict="keep", reviewer="ana")


def test_a_review_written_again_with_its_time_is_stored_once(sessions, sample_ids):
    """A write retried after an error whose outcome was unclear (did the commit land?) must not double a row."""
    from datetime import UTC, datetime

    a, _, _ = sample_ids
    clicked = datetime.now(UTC)
    with sessions.begin() as session:
        first = reviews.add_review(session=session, sample_id=a, verdict="keep", reviewer="ana", note="ok", at=clicked)
        first_id = first.id
    with sessions.begin() as session:  # the retry: same sample, reviewer, time, verdict and note
        again = reviews.add_review(session=session, sample_id=a, verdict="keep", reviewer="ana", note="ok", at=clicked)
        assert again.id == first_id
        reviews.add_review(session=session, sample_id=a, verdict="remove", reviewer="ana", note="ok", at=clicked)
        reviews.add_review(session=session, sample_id=a, verdict=None, reviewer="ana", note="ok", at=clicked)
    with sessions() as session:
        history = reviews.review_history(session=session, sample_id=a)
    assert [(r.verdict, r.note, r.created_at) for r in history] == [
        ("keep", "ok", clicked),
        ("remove", "ok", clicked),  # a different verdict at the same instant is a review of its own
        (None, "ok", clicked),
    ]


def test_the_newest_review_id_changes_with_every_review(sessions, sample_ids):
    a, b, _ = sample_ids
    with sessions() as session:
        assert reviews.newest_review_id(session=session) == 0
    with sessions.begin() as session:
        first = reviews.add_review(session=session, sample_id=a, verdict="keep", reviewer="ana").id
    with sessions.begin() as session:
        assert reviews.newest_review_id(session=session) == first
        second = reviews.add_review(session=session, sample_id=b, verdict=None, reviewer="ana", note="look").id
    with sessions() as session:
        assert reviews.newest_review_id(session=session) == second > first


def test_a_bulk_verdict_gives_every_sample_one_row_keeps_each_note_and_is_written_once(sessions, sample_ids):
    a, b, c = sample_ids
    at = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    with sessions.begin() as session:
        reviews.add_review(session=session, sample_id=a, verdict=None, reviewer="ana", note="cropped")
        assert (
            reviews.add_verdicts(session=session, sample_ids=[a, b, c, a], verdict="remove", reviewer="ben", at=at) == 3
        )
    with sessions.begin() as session:  # the same action retried (its outcome was unclear): nothing new
        reviews.add_verdicts(session=session, sample_ids=[a, b, c], verdict="remove", reviewer="ben", at=at)
    with sessions() as session:
        latest = reviews.latest_reviews(session=session)
        rows = session.query(Review).count()
    assert {s: (r.verdict, r.reviewer, r.note) for s, r in latest.items()} == {
        a: ("remove", "ben", "cropped"), b: ("remove", "ben", None), c: ("remove", "ben", None)
    }  # fmt: skip
    assert rows == 4


def test_a_bulk_verdict_with_an_unknown_sample_is_refused_whole_and_writes_nothing(sessions, sample_ids):
    a, b, _ = sample_ids
    with pytest.raises(ValueError, match="no sample 999999"), sessions.begin() as session:
        reviews.add_verdicts(session=session, sample_ids=[a, 999999, b], verdict="remove", reviewer="ben")
    for blank in ({"verdict": " ", "reviewer": "ben"}, {"verdict": "remove", "reviewer": " "}):
        with pytest.raises(ValueError), sessions.begin() as session:
            reviews.add_verdicts(session=session, sample_ids=[a], **blank)
    with sessions() as session:
        assert session.query(Review).count() == 0


def test_a_dataset_keeps_its_verdict_set(sessions, sample_ids):
    with sessions.begin() as session:
        assert reviews.verdict_set(session=session, dataset_id=1) is None
        stored = reviews.store_verdict_set(
            session=session, dataset_id=1, verdicts=[" remove", "keep", "", "keep", "relabel"]
        )
    assert stored == ["remove", "keep", "relabel"]
    with sessions() as session:
        assert reviews.verdict_set(session=session, dataset_id=1) == ["remove", "keep", "relabel"]
        assert reviews.verdict_set(session=session, dataset_id=2) is None  # each dataset its own
    with sessions.begin() as session:
        for wrong in ([], [" "], [str(i) for i in range(10)], ["x" * 65]):
            with pytest.raises(ValueError):
                reviews.store_verdict_set(session=session, dataset_id=1, verdicts=wrong)
        with pytest.raises(ValueError, match="no dataset"):
            reviews.store_verdict_set(session=session, dataset_id=99, verdicts=["a"])


def test_the_history_says_who_changed_which_of_verdict_and_note_and_a_note_alone_keeps_its_author(sessions, sample_ids):
    a, b, _ = sample_ids
    t1, t2, t3, t4 = (datetime(2026, 12, 3, 9, minute, tzinfo=UTC) for minute in (1, 2, 3, 4))
    with sessions.begin() as session:
        reviews.add_review(
            session=session, sample_id=a, verdict=None, reviewer="ana", note="ask the radiologist", at=t1
        )
        # verdicts given after the note carry it unchanged (as the Review page and a bulk verdict do)
        reviews.add_review(
            session=session, sample_id=a, verdict="remove", reviewer="ben", note="ask the radiologist", at=t2
        )
        reviews.add_verdicts(session=session, sample_ids=[a], verdict="keep", reviewer="cara", at=t3)
    with sessions() as session:
        current = reviews.latest_reviews(session=session, sample_ids=[a])[a]
    assert (current.verdict, current.reviewer, current.reviewed_at) == ("keep", "cara", t3)
    assert (current.note, current.noted_by, current.noted_at) == ("ask the radiologist", "ana", t1)
    with sessions.begin() as session:
        reviews.add_review(session=session, sample_id=a, verdict=None, reviewer="ben", note="cropped", at=t4)
    with sessions() as session:
        history = reviews.review_changes(session=session, sample_id=a)
        assert reviews.review_changes(session=session, sample_id=b) == []
        assert reviews.latest_reviews(session=session, sample_ids=[a])[a].noted_by == "ben"
    assert [
        (c.at, c.reviewer, c.gave_verdict, c.verdict_before, c.verdict, c.verdict_changed, c.note_changed)
        for c in history
    ] == [
        (t4, "ben", False, "keep", "keep", False, True),
        (t3, "cara", True, "remove", "keep", True, False),
        (t2, "ben", True, None, "remove", True, False),
        (t1, "ana", False, None, None, False, True),
    ]  # newest first
    assert [(c.note_before, c.note, c.note_by, c.note_at) for c in history] == [
        ("ask the radiologist", "cropped", "ben", t4),
        ("ask the radiologist", "ask the radiologist", "ana", t1),
        ("ask the radiologist", "ask the radiologist", "ana", t1),
        (None, "ask the radiologist", "ana", t1),
    ]
