"""Verdicts and notes on samples: an append-only history, so no verdict or note is ever silently overwritten.

A new verdict or note is a new row, and every earlier one stays, with who wrote it and when. A
sample's verdict is its latest row that has one; its note is its latest row's note (callers send the
whole current note with every row, and a row with a note alone keeps a note typed before any
verdict). The database refuses updates of a review's content (a trigger), so this holds whatever
code touches the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from db.models import Dataset, Review, Sample, utcnow


def add_review(
    *,
    session: Session,
    sample_id: int,
    verdict: str | None,
    reviewer: str,
    note: str | None = None,
    job_id: int | None = None,
    at: datetime | None = None,
) -> Review:
    """Record a verdict ("anomalous", "normal", "remove", "keep", "relabel", ...) and/or a note on a sample.

    `verdict=None` records the note alone and leaves the verdict as it was; an empty note then clears
    an earlier note. `job_id` names the run it was reviewed in, for context; the review belongs to the sample.
    `at`: when the reviewer gave it (timezone-aware; default now). With `at`, a write is idempotent: the same
    review (sample, reviewer, time, verdict, note) already stored is returned instead of being added again,
    so a write retried after an error whose outcome was unclear stays one row.
    """
    verdict, reviewer = _checked(verdict, reviewer)
    note = (note or "").strip() or None
    if session.get(Sample, sample_id) is None:
        raise ValueError(f"no sample {sample_id}")
    if verdict is None and note is None and not session.scalar(select(Review.id).where(Review.sample_id == sample_id)):
        raise ValueError("a review needs a verdict or a note")
    if at is not None:
        same = session.scalars(
            select(Review).where(
                Review.sample_id == sample_id,
                Review.reviewer == reviewer,
                Review.created_at == at,
                Review.verdict.is_(None) if verdict is None else Review.verdict == verdict,
                Review.note.is_(None) if note is None else Review.note == note,
            )
        ).first()
        if same is not None:
            return same
    review = Review(
        sample_id=sample_id, verdict=verdict, reviewer=reviewer, note=note, job_id=job_id, created_at=at or utcnow()
    )
    session.add(review)
    session.flush()
    return review


def _checked(verdict: str | None, reviewer: str) -> tuple[str | None, str]:
    """(verdict, reviewer) stripped; a blank verdict (None is no verdict) or a nameless reviewer refused."""
    verdict = verdict.strip() if verdict is not None else None
    if verdict is not None and not verdict:
        raise ValueError("a verdict cannot be blank")
    if not reviewer.strip():
        raise ValueError("a review needs a reviewer's name")
    return verdict, reviewer.strip()


@dataclass(frozen=True)
class CurrentReview:
    """Where a sample's review stands: its verdict (None if it only has notes) and its note."""

    verdict: str | None
    reviewer: str | None  # who set the verdict
    reviewed_at: datetime | None  # when the verdict was set
    note: str | None
    noted_by: str  # who wrote the note as it stands (a verdict given after it leaves it theirs)
    noted_at: datetime


def latest_reviews(
    *, session: Session, sample_ids: Sequence[int] | None = None, dataset_id: int | None = None
) -> dict[int, CurrentReview]:
    """The current verdict and note of each reviewed sample (of `sample_ids`, of a dataset, or all)."""
    newest = select(func.max(Review.id)).group_by(Review.sample_id)
    if dataset_id is not None:
        newest = newest.join(Sample, Sample.id == Review.sample_id).where(Sample.dataset_id == dataset_id)
    with_verdict = newest.where(Review.verdict.is_not(None))
    ids = None if sample_ids is None else [int(i) for i in sample_ids]
    chunks = [None] if ids is None else [ids[i : i + 5000] for i in range(0, len(ids), 5000)]
    last: dict[int, Review] = {}
    verdicts: dict[int, Review] = {}
    for chunk in chunks:
        for query, found in ((newest, last), (with_verdict, verdicts)):
            if chunk is not None:
                query = query.where(Review.sample_id.in_(chunk))
            for review in session.scalars(select(Review).where(Review.id.in_(query))):
                found[review.sample_id] = review
    authors = _note_authors(session, list(last))
    current = {}
    for sample_id, row in last.items():
        verdict = verdicts.get(sample_id)
        noted_by, noted_at = authors.get(sample_id, (row.reviewer, row.created_at))
        current[sample_id] = CurrentReview(
            verdict=verdict.verdict if verdict else None,
            reviewer=verdict.reviewer if verdict else None,
            reviewed_at=verdict.created_at if verdict else None,
            note=row.note,
            noted_by=noted_by,
            noted_at=noted_at,
        )
    return current


def _note_authors(session: Session, sample_ids: list[int]) -> dict[int, tuple[str, datetime]]:
    """Who wrote each sample's standing note, and when: the row where its text last changed. Every verdict row
    carries the note as it stands, so the newest row's reviewer is the verdict's, not necessarily the note's."""
    found: dict[int, tuple[str, datetime]] = {}
    previous: dict[int, str | None] = {}
    for start in range(0, len(sample_ids), 5000):
        rows = session.execute(
            select(Review.sample_id, Review.note, Review.reviewer, Review.created_at)
            .where(Review.sample_id.in_(sample_ids[start : start + 5000]))
            .order_by(Review.id)
        )
        for sample_id, note, reviewer, at in rows:
            if sample_id not in previous or previous[sample_id] != note:
                found[sample_id] = (reviewer, at)
            previous[sample_id] = note
    return found


def review_history(*, session: Session, sample_id: int) -> list[Review]:
    """Every verdict and note a sample was given, oldest first."""
    return list(session.scalars(select(Review).where(Review.sample_id == sample_id).order_by(Review.id)))


@dataclass(frozen=True)
class ReviewChange:
    """One row of a sample's review history, read as what it changed.

    `verdict` is the verdict after this row and `verdict_before` the one it replaced (a note alone leaves it:
    both the same); `note` / `note_before` likewise. `note_by` / `note_at`: who wrote the note standing after
    this row and when. A verdict row carries the note as it stands, so a note saved without a verdict keeps its
    author and time through the verdicts given after it, until someone changes its text."""

    review_id: int
    at: datetime
    reviewer: str
    job_id: int | None
    verdict: str | None
    verdict_before: str | None
    gave_verdict: bool  # False: a note alone
    note: str | None
    note_before: str | None
    note_by: str | None
    note_at: datetime | None

    @property
    def verdict_changed(self) -> bool:
        return self.verdict != self.verdict_before

    @property
    def note_changed(self) -> bool:
        return self.note != self.note_before


def review_changes(*, session: Session, sample_id: int) -> list[ReviewChange]:
    """A sample's review history, newest first: each review with who gave it, when, and which of the verdict and
    the note it changed (from what to what)."""
    changes: list[ReviewChange] = []
    verdict: str | None = None
    note: str | None = None
    note_by: str | None = None
    note_at: datetime | None = None
    for row in review_history(session=session, sample_id=sample_id):
        before_verdict, before_note = verdict, note
        if row.verdict is not None:
            verdict = row.verdict
        note = row.note  # a sample's note is its newest row's (see the module's docstring)
        if note != before_note:
            note_by, note_at = (row.reviewer, row.created_at) if note is not None else (None, None)
        changes.append(
            ReviewChange(
                review_id=row.id,
                at=row.created_at,
                reviewer=row.reviewer,
                job_id=row.job_id,
                verdict=verdict,
                verdict_before=before_verdict,
                gave_verdict=row.verdict is not None,
                note=note,
                note_before=before_note,
                note_by=note_by,
                note_at=note_at,
            )
        )
    return changes[::-1]


def newest_review_id(*, session: Session) -> int:
    """The id of the newest review (0 when there is none): changes whenever any verdict or note is written."""
    return int(session.scalar(select(func.max(Review.id))) or 0)


def add_verdicts(
    *,
    session: Session,
    sample_ids: Sequence[int],
    verdict: str,
    reviewer: str,
    job_id: int | None = None,
    at: datetime | None = None,
) -> int:
    """Give every sample of `sample_ids` the same verdict (a box or lasso on the Explore page): one new row
    each, carrying the sample's current note, so no note is cleared. Returns how many samples it covered.

    `at` as for `add_review`: with it, writing the same action again adds nothing new. An unknown sample id
    refuses the whole action (ValueError), as `add_review` refuses one. Set-wise, in chunks: a lasso over a
    thinned chart can hold tens of thousands of samples, and row by row they held the write lock for seconds.
    """
    ids = list(dict.fromkeys(int(i) for i in sample_ids))
    verdict, reviewer = _checked(verdict, reviewer)
    chunks = [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]
    for chunk in chunks:
        known = set(session.scalars(select(Sample.id).where(Sample.id.in_(chunk))))
        missing = [i for i in chunk if i not in known]
        if missing:
            raise ValueError(f"no sample {missing[0]}")
    notes = {s: r.note for s, r in latest_reviews(session=session, sample_ids=ids).items()}
    done: set[int] = set()
    if at is not None:  # the same action written before (a retry after an unclear error): those rows stay one
        for chunk in chunks:
            done.update(
                session.scalars(
                    select(Review.sample_id).where(
                        Review.sample_id.in_(chunk),
                        Review.reviewer == reviewer,
                        Review.created_at == at,
                        Review.verdict == verdict,
                    )
                )
            )
    at = at or utcnow()
    rows = [
        {"sample_id": i, "verdict": verdict, "reviewer": reviewer, "note": notes.get(i), "job_id": job_id,
         "created_at": at}
        for i in ids
        if i not in done
    ]  # fmt: skip
    for i in range(0, len(rows), _CHUNK):
        session.execute(insert(Review), rows[i : i + _CHUNK])
    return len(ids)


_CHUNK = 5000  # ids per IN list: under SQLite's bound-parameter limit, as latest_reviews chunks


MAX_VERDICTS = 9  # one key each on the Review page: 1 … 9


def verdict_set(*, session: Session, dataset_id: int) -> list[str] | None:
    """The verdict set stored with a dataset (None: none chosen yet)."""
    dataset = session.get(Dataset, dataset_id)
    return list(dataset.verdicts) if dataset is not None and dataset.verdicts else None


def store_verdict_set(*, session: Session, dataset_id: int, verdicts: Sequence[str]) -> list[str]:
    """Keep `verdicts` (blank ones dropped, order and first occurrence kept) as the dataset's verdict set."""
    cleaned = list(dict.fromkeys(v.strip() for v in verdicts if v.strip()))
    if not cleaned:
        raise ValueError("a verdict set needs at least one verdict")
    if len(cleaned) > MAX_VERDICTS:
        raise ValueError(f"a verdict set holds at most {MAX_VERDICTS} verdicts (one key each)")
    if any(len(v) > 64 for v in cleaned):
        raise ValueError("a verdict is at most 64 characters")
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise ValueError(f"no dataset {dataset_id}")
    if dataset.verdicts != cleaned:
        dataset.verdicts = cleaned
        session.flush()
    return cleaned
