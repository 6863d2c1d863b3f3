"""The curation list: samples a curator sent from the Data page (unreadable files, duplicates, near
duplicates, or any other) to the Review page, where each gets an ordinary verdict (`db/reviews.py`)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import CurationItem, Sample, utcnow
from db.session import dialect_insert

CHUNK = 5000


def add_items(*, session: Session, sample_ids: Iterable[int], added_by: str) -> int:
    """Put samples on their datasets' curation lists (ones already there stay as they were); returns how many
    were new."""
    ids = sorted({int(i) for i in sample_ids})
    before = count_items(session=session)
    insert = dialect_insert(session)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        datasets = dict(session.execute(select(Sample.id, Sample.dataset_id).where(Sample.id.in_(chunk))).all())
        missing = set(chunk) - set(datasets)
        if missing:
            raise ValueError(f"no sample {min(missing)}")
        rows = [{"sample_id": i, "dataset_id": datasets[i], "added_by": added_by, "added_at": utcnow()} for i in chunk]
        session.execute(insert(CurationItem.__table__).on_conflict_do_nothing(index_elements=["sample_id"]), rows)
    return count_items(session=session) - before


def remove_items(*, session: Session, sample_ids: Iterable[int]) -> None:
    """Take samples off the curation list (their reviews stay)."""
    ids = [int(i) for i in sample_ids]
    for start in range(0, len(ids), CHUNK):
        session.execute(delete(CurationItem).where(CurationItem.sample_id.in_(ids[start : start + CHUNK])))


def item_ids(*, session: Session, dataset_id: int) -> list[int]:
    """Sample ids on a dataset's curation list, in the order they were added."""
    return list(
        session.scalars(
            select(CurationItem.sample_id)
            .where(CurationItem.dataset_id == dataset_id)
            .order_by(CurationItem.added_at, CurationItem.sample_id)
        )
    )


def count_items(*, session: Session, dataset_id: int | None = None) -> int:
    query = select(func.count()).select_from(CurationItem)
    if dataset_id is not None:
        query = query.where(CurationItem.dataset_id == dataset_id)
    return int(session.scalar(query) or 0)
