"""Reviews for the pages: each sample's current verdict and note, and writing a new one.

Reviews are append-only rows (`db/reviews.py`); a sample's review is its newest. Reads for the ranked
list are cached (`st.cache_data`) under the newest review's id, so each verdict shows at once.
`write_review` is what the Review page's clicks call from a widget callback: plain Python and
SQLAlchemy, no Streamlit call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import streamlit as st

from dashboard import connection
from dashboard.outbox import Outbox, Pending, ReviewWrite, VerdictBatch
from db import datasets as db_datasets
from db import job_reads as db_job_reads
from db import reviews as db_reviews


def _review_stamp() -> int:
    with connection.session() as session:
        return db_reviews.newest_review_id(session=session)


def _read_reviews(url: str, sample_ids: Sequence[int]) -> pd.DataFrame:
    with connection.sessions(url).begin() as session:
        latest = db_reviews.latest_reviews(session=session, sample_ids=list(sample_ids))
        rows = [
            {"sample_id": s, "verdict": r.verdict, "note": r.note, "reviewer": r.reviewer, "reviewed_at": r.reviewed_at}
            for s, r in latest.items()
        ]
    return pd.DataFrame(rows, columns=["sample_id", "verdict", "note", "reviewer", "reviewed_at"])


@st.cache_data(max_entries=16, show_spinner=False)
def _reviews(url: str, sample_ids: tuple[int, ...], stamp: int) -> pd.DataFrame:
    """The latest review of each sample, cached until any new review is written (`stamp`: newest review id)."""
    return _read_reviews(url, sample_ids)


def with_reviews(frame: pd.DataFrame, *, fresh: bool = False) -> pd.DataFrame:
    """`frame` (with a sample_id column) joined with each sample's current verdict, note, reviewer and
    reviewed_at; `fresh`: read them now rather than from the cache."""
    ids = tuple(int(i) for i in frame["sample_id"])
    if fresh:
        reviews = _read_reviews(connection.database_url(), ids)
    else:
        reviews = _reviews(connection.database_url(), ids, _review_stamp())
    merged = frame.merge(reviews, on="sample_id", how="left")
    return merged.astype({"verdict": "object", "note": "object", "reviewer": "object"})


@st.cache_data(max_entries=16, show_spinner=False)
def _run_reviews(url: str, job_id: int, stamp: int) -> pd.DataFrame:
    """The latest review of each reviewed sample of the dataset a run scored, cached until any new review is
    written. Keyed by the run, not by its samples' ids: hashing 100k ids for the key took longer than the read."""
    with connection.sessions(url).begin() as session:
        job = db_job_reads.get_job(session=session, job_id=job_id)
        latest = db_reviews.latest_reviews(session=session, dataset_id=job.dataset_id) if job else {}
        rows = [
            {"sample_id": s, "verdict": r.verdict, "note": r.note, "reviewer": r.reviewer, "reviewed_at": r.reviewed_at}
            for s, r in latest.items()
        ]
    return pd.DataFrame(rows, columns=["sample_id", "verdict", "note", "reviewer", "reviewed_at"])


def with_run_reviews(frame: pd.DataFrame, job_id: int) -> pd.DataFrame:
    """`frame` (the run's samples, a sample_id column) joined with each sample's current verdict, note, reviewer
    and reviewed_at, as `with_reviews` joins them, reading only the samples that have a review."""
    reviews = _run_reviews(connection.database_url(), job_id, _review_stamp())
    merged = frame.merge(reviews.astype({"sample_id": frame["sample_id"].dtype}), on="sample_id", how="left")
    return merged.astype({"verdict": "object", "note": "object", "reviewer": "object"})


def current_reviews(sample_ids: Sequence[int]) -> dict[int, db_reviews.CurrentReview]:
    """Where each reviewed sample's review stands now (verdict, who, when, note); unreviewed ones are absent."""
    with connection.session() as session:
        return db_reviews.latest_reviews(session=session, sample_ids=list(sample_ids))


def _saved(key: str | None, verdict: str | None, note: str | None) -> str:
    if verdict is None:
        return f"Saved the note for {key}" if (note or "").strip() else f"Cleared the note for {key}"
    return f"Saved: {verdict} for {key}"


def record_verdict(sample_id: int, job_id: int, verdict: str | None, note: str | None, reviewer: str) -> str:
    """Save a verdict and note at once as a new review row (`verdict=None`: the note alone, the verdict
    stays as it was); returns a confirmation or what went wrong."""
    try:
        with connection.session() as session:
            db_reviews.add_review(
                session=session, sample_id=sample_id, verdict=verdict, reviewer=reviewer, note=note, job_id=job_id
            )
            key = db_datasets.sample_key(session=session, sample_id=sample_id)
    except ValueError as error:
        return f"Not saved: {error}"
    return _saved(key, verdict, note)


def write_review(item: Pending) -> str:
    """Store one click of the Review page (a verdict with its note, or a note alone) or one bulk verdict of
    the Explore page, at its click time, in one transaction.

    Returns a confirmation; raises DatabaseError (DatabaseLocked: another process holds the write lock
    longer than connection.WRITE_WAIT_S) for a write to retry, ValueError for one refused for good.
    Idempotent: the same click written twice is one row (a row per sample for a bulk verdict). Plain Python
    and SQLAlchemy only, safe inside a widget callback.
    """
    with connection.writer(connection.database_url()).begin() as session:
        if isinstance(item, VerdictBatch):
            count = db_reviews.add_verdicts(
                session=session,
                sample_ids=item.sample_ids,
                verdict=item.verdict,
                reviewer=item.reviewer,
                job_id=item.job_id,
                at=item.clicked_at,
            )
            return f"Saved: {item.verdict} for {count:,} sample{'s' if count != 1 else ''}"
        note = item.note
        if item.verdict is not None and note is None:  # a verdict without a typed note keeps the sample's note
            current = db_reviews.latest_reviews(session=session, sample_ids=[item.sample_id]).get(item.sample_id)
            note = current.note if current else None
        db_reviews.add_review(
            session=session,
            sample_id=item.sample_id,
            verdict=item.verdict,
            reviewer=item.reviewer,
            note=note,
            job_id=item.job_id,
            at=item.clicked_at,
        )
        key = db_datasets.sample_key(session=session, sample_id=item.sample_id)
    return _saved(key, item.verdict, note)


# Widget callbacks of every list that takes verdicts (the ranked queue, the curation list). They run before the
# rerun a click starts and call no Streamlit function before the write is queued: Streamlit cuts a callback off
# at its first `st.*` call or session-state read when a newer click has arrived, and the older click would be
# lost. `st.session_state.to_dict()` is the one read that is not such a point; everything else comes in through
# the widgets' args. `note_key`: the row's note field, whose text goes with a verdict. job_id None: a verdict on
# a file, not on a run's score.


def queue_verdict(
    verdict: str,
    sample_id: int,
    job_id: int | None,
    reviewer: str,
    box: Outbox,
    note_key: str,
    then: Callable[[], None] | None = None,
) -> None:
    # The note typed in the field goes with the verdict. A field left as it was drawn (`{note_key}_drawn`, kept by
    # the page that drew it) may hold an older note than the sample's: one saved since in another tab or in
    # another field for the same sample. Sending that back would clear the newer note, so then the verdict
    # carries none (None) and write_review keeps the note the sample has when the verdict is stored.
    # `then`: plain Python to run once the write is queued (the Review page's cursor moving on).
    state = st.session_state.to_dict()
    typed = state.get(note_key)
    note = None if typed is None or typed == state.get(f"{note_key}_drawn") else typed.strip()
    box.add(ReviewWrite(sample_id, job_id, verdict, note, reviewer))
    if then is not None:
        then()


def queue_note(sample_id: int, stored: str, job_id: int | None, reviewer: str, box: Outbox, note_key: str) -> None:
    # The note alone: a new row without a verdict, so the verdict (if any) stays as it was. Skipped when
    # the note is what was sent already (a verdict clicked in the same rerun carried it).
    note = (st.session_state.to_dict().get(note_key) or "").strip()
    if note != box.note(sample_id, stored):
        box.add(ReviewWrite(sample_id, job_id, None, note, reviewer))


def outbox() -> Outbox:
    """This browser session's pending verdicts and notes, shared by the Review and Explore pages; kept across
    reruns until each is stored."""
    if "review_outbox" not in st.session_state:
        st.session_state["review_outbox"] = Outbox(write_review)
    return st.session_state["review_outbox"]


def stored_verdict_set(job_id: int) -> list[str] | None:
    """The verdict set stored with the dataset a run scored (None: none chosen yet)."""
    with connection.session() as session:
        job = db_job_reads.get_job(session=session, job_id=job_id)
        return db_reviews.verdict_set(session=session, dataset_id=job.dataset_id) if job else None


def store_verdict_set(job_id: int, verdicts: Sequence[str]) -> None:
    """Keep `verdicts` with the dataset the run scored, for every page, reviewer and later visit."""
    with connection.session() as session:
        job = db_job_reads.get_job(session=session, job_id=job_id)
        if job is not None:
            db_reviews.store_verdict_set(session=session, dataset_id=job.dataset_id, verdicts=verdicts)
