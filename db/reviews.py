"""Verdicts on samples: an append-only history, so no verdict is ever silently overwritten.

A new verdict is a new row; the latest row of a sample is its verdict, and every earlier one stays,
with who set it and when. The database refuses updates of a review's content (a trigger), so this
holds whatever code touches the table.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Review, Sample, utcnow


def add_review(
    *,
    session: Session,
    sample_id: int,
    verdict: str,
    reviewer: str,
    note: str | None = None,
    job_id: int | None = None,
) -> Review:
    """Record a verdict ("anomalous", "normal", "remove", "keep", "relabel", ...) on a sample.

    `job_id` names the run it was reviewed in, for context; the verdict belongs to the sample.
    """
    verdict, reviewer = verdict.strip(), reviewer.strip()
    if not verdict:
        raise ValueError("a review needs a verdict")
    if not reviewer:
        raise ValueError("a review needs a reviewer's name")
    if session.get(Sample, sample_id) is None:
        raise ValueError(f"no sample {sample_id}")
    review = Review(
        sample_id=sample_id,
        verdict=verdict,
        reviewer=reviewer,
        note=(note or "").strip() or None,
        job_id=job_id,
        created_at=utcnow(),
    )
    session.add(review)
    session.flush()
    return review


def latest_reviews(
    *, session: Session, sample_ids: Sequence[int] | None = None, dataset_id: int | None = None
) -> dict[int, Review]:
    """The current verdict of each reviewed sample (of `sample_ids`, of a dataset, or all): {sample id: Review}."""
    latest = select(func.max(Review.id)).group_by(Review.sample_id)
    if dataset_id is not None:
        latest = latest.join(Sample, Sample.id == Review.sample_id).where(Sample.dataset_id == dataset_id)
    found: dict[int, Review] = {}
    if sample_ids is None:
        for review in session.scalars(select(Review).where(Review.id.in_(latest))):
            found[review.sample_id] = review
        return found
    ids = [int(i) for i in sample_ids]
    for start in range(0, len(ids), 5000):
        chunk = latest.where(Review.sample_id.in_(ids[start : start + 5000]))
        for review in session.scalars(select(Review).where(Review.id.in_(chunk))):
            found[review.sample_id] = review
    return found


def review_history(*, session: Session, sample_id: int) -> list[Review]:
    """Every verdict a sample was given, oldest first."""
    return list(session.scalars(select(Review).where(Review.sample_id == sample_id).order_by(Review.id)))
