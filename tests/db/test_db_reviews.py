"""Reviews are an append-only history: the latest is the verdict, nothing is ever overwritten."""

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
