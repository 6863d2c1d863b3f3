"""Datasets and their samples: register a source, record what its inventory found, thumbnails.

A sample is keyed by (dataset, key), where key is the engine's stable `sample_id` (a relative path,
"train/12", "digits/5"); everything else refers to it by its integer id. Registering the same
source again updates its samples in place, so results and reviews that point at them survive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from db.models import Dataset, Sample, Thumbnail, utcnow
from db.session import dialect_insert

CHUNK = 5000  # rows per INSERT batch
SAMPLE_FIELDS = (
    "position",
    "location",
    "label",
    "split",
    "width",
    "height",
    "mode",
    "num_bytes",
    "sha256",
    "readable",
    "reason",
    "phash",
    "dhash",
)
GONE = "no longer in the source"


def create_dataset(*, session: Session, location: str, name: str | None = None) -> Dataset:
    """A dataset row for a source spec (a folder, .zip, .csv, .npz, or 'digits'); samples come from a
    register job (`db.job_submit.submit_register`) or, without one, from the first run that uses it."""
    location = location.strip()
    if not location:
        raise ValueError("a dataset needs a location: a folder, .zip, .csv, .npz or 'digits'")
    dataset = Dataset(name=name or Path(location).name or location, location=location, created_at=utcnow())
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(*, session: Session, dataset_id: int) -> Dataset | None:
    return session.get(Dataset, dataset_id, populate_existing=True)


def list_datasets(*, session: Session) -> list[Dataset]:
    """Every dataset, newest first."""
    return list(session.scalars(select(Dataset).order_by(Dataset.id.desc())))


def relocate_dataset(*, session: Session, dataset_id: int, location: str) -> None:
    """Point a dataset at its source's new place (a moved folder); keys, results and reviews stay."""
    session.execute(update(Dataset).where(Dataset.id == dataset_id).values(location=location.strip()))


def record_source(
    *, session: Session, dataset_id: int, kind: str, label_origin: str | None, split_origin: str | None
) -> None:
    """What registering found out about the source as a whole."""
    session.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id)
        .values(kind=kind, label_origin=label_origin, split_origin=split_origin, registered_at=utcnow())
    )


def upsert_samples(*, session: Session, dataset_id: int, samples: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Insert or update samples by key; each mapping has "key" and any of SAMPLE_FIELDS.

    Returns {key: sample id} for the given samples.
    """
    insert = dialect_insert(session)
    for start in range(0, len(samples), CHUNK):
        rows = [{"dataset_id": dataset_id, **_sample_row(s)} for s in samples[start : start + CHUNK]]
        fields = sorted(set(rows[0]) - {"dataset_id", "key"})
        if any(len(row) != len(rows[0]) or not rows[0].keys() == row.keys() for row in rows):
            raise ValueError("every sample of one upsert must give the same fields")
        statement = insert(Sample.__table__)
        if fields:
            statement = statement.on_conflict_do_update(
                index_elements=["dataset_id", "key"], set_={name: statement.excluded[name] for name in fields}
            )
        else:
            statement = statement.on_conflict_do_nothing(index_elements=["dataset_id", "key"])
        session.execute(statement, rows)
    return sample_ids(session=session, dataset_id=dataset_id, keys=[s["key"] for s in samples])


def ensure_samples(*, session: Session, dataset_id: int, samples: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Ids of samples by key, inserting the ones not there yet (existing rows are left as they are)."""
    known = sample_ids(session=session, dataset_id=dataset_id)
    missing = [s for s in samples if s["key"] not in known]
    if missing:
        insert = dialect_insert(session)
        for start in range(0, len(missing), CHUNK):
            rows = [{"dataset_id": dataset_id, **_sample_row(s)} for s in missing[start : start + CHUNK]]
            statement = insert(Sample.__table__).on_conflict_do_nothing(index_elements=["dataset_id", "key"])
            session.execute(statement, rows)
        known = sample_ids(session=session, dataset_id=dataset_id)
    return {s["key"]: known[s["key"]] for s in samples}


def _sample_row(sample: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(sample) - set(SAMPLE_FIELDS) - {"key"}
    if unknown:
        raise ValueError(f"unknown sample field(s): {', '.join(sorted(unknown))}")
    return dict(sample)


def sample_ids(*, session: Session, dataset_id: int, keys: Iterable[str] | None = None) -> dict[str, int]:
    """{key: sample id} for a dataset's samples (all of them, or those of `keys` that exist)."""
    rows = session.execute(select(Sample.key, Sample.id).where(Sample.dataset_id == dataset_id)).all()
    ids = {key: sample_id for key, sample_id in rows}
    if keys is None:
        return ids
    return {key: ids[key] for key in keys if key in ids}


def sample_counts(*, session: Session) -> dict[int, int]:
    """{dataset id: how many samples}; datasets without samples are absent."""
    rows = session.execute(select(Sample.dataset_id, func.count()).group_by(Sample.dataset_id)).all()
    return {dataset_id: int(n) for dataset_id, n in rows}


def sample_tally(*, session: Session, dataset_id: int) -> tuple[int, int | None]:
    """How many samples a dataset has and its newest sample id (None without samples): changes whenever a
    registration or a run adds samples."""
    count, newest = session.execute(
        select(func.count(), func.max(Sample.id)).where(Sample.dataset_id == dataset_id)
    ).one()
    return int(count), newest


def sample_locations(*, session: Session, dataset_id: int) -> dict[int, str]:
    """{sample id: location} for every sample of a dataset."""
    rows = session.execute(select(Sample.id, Sample.location).where(Sample.dataset_id == dataset_id)).all()
    return {sample_id: location for sample_id, location in rows}


def sample_key(*, session: Session, sample_id: int) -> str | None:
    """A sample's key ("train/12"), or None when no such sample exists."""
    return session.scalar(select(Sample.key).where(Sample.id == sample_id))


def shared_content(*, session: Session, dataset_id: int, other_dataset_id: int) -> int:
    """How many readable samples of `dataset_id` have the same file bytes (the registration's sha256) as a
    sample of `other_dataset_id`: training images inside a new batch, before anything is decoded."""
    other = select(Sample.sha256).where(Sample.dataset_id == other_dataset_id, Sample.sha256.is_not(None))
    return int(
        session.scalar(
            select(func.count()).where(
                Sample.dataset_id == dataset_id, Sample.readable.is_not(False), Sample.sha256.in_(other)
            )
        )
        or 0
    )


def _point_at_first(session: Session, dataset_id: int, groups: Sequence[Sequence[str]], column: str) -> None:
    """Every sample of a group but its first points at the first one (in `column`); the groups of a new
    registration replace the old ones."""
    ids = sample_ids(session=session, dataset_id=dataset_id)
    session.execute(update(Sample).where(Sample.dataset_id == dataset_id).values({column: None}))
    rows = [
        {"b_id": ids[key], "b_first": ids[group[0]]}
        for group in groups
        for key in group[1:]
        if key in ids and group[0] in ids
    ]
    if rows:
        statement = update(Sample.__table__).where(Sample.__table__.c.id == bindparam("b_id"))
        session.execute(statement.values({column: bindparam("b_first")}), rows)


def mark_duplicates(*, session: Session, dataset_id: int, groups: Sequence[Sequence[str]]) -> None:
    """Flag exact duplicates: every sample of a group but its first points at the first one."""
    _point_at_first(session, dataset_id, groups, "duplicate_of")


def mark_near_duplicates(*, session: Session, dataset_id: int, groups: Sequence[Sequence[str]]) -> None:
    """Flag near duplicates (`engine.near_duplicates`): every sample of a group but its first points at the
    first one; a new registration's groups replace the old ones."""
    _point_at_first(session, dataset_id, groups, "near_duplicate_of")


def exact_copies(*, session: Session, sample_id: int) -> list[str]:
    """Keys of the sample's exact duplicates (`mark_duplicates`: the same file bytes), in key order: the
    copies a leave-one-out score leaves out with it."""
    sample = session.get(Sample, sample_id)
    if sample is None:
        return []
    first = sample.duplicate_of if sample.duplicate_of is not None else sample.id
    group = or_(Sample.id == first, Sample.duplicate_of == first)
    return list(
        session.scalars(
            select(Sample.key)
            .where(Sample.dataset_id == sample.dataset_id, group, Sample.id != sample_id)
            .order_by(Sample.key)
        )
    )


def mark_missing(*, session: Session, dataset_id: int, present: Iterable[str]) -> int:
    """Samples a new registration no longer found are kept (results and reviews point at them) but
    flagged unreadable. Returns how many were flagged."""
    gone = set(sample_ids(session=session, dataset_id=dataset_id)) - set(present)
    keys = sorted(gone)
    for start in range(0, len(keys), CHUNK):
        session.execute(
            update(Sample)
            .where(Sample.dataset_id == dataset_id, Sample.key.in_(keys[start : start + CHUNK]))
            .values(readable=False, reason=GONE, position=None)
        )
    return len(keys)


def read_samples(*, session: Session, dataset_id: int) -> dict[str, Any]:
    """Every sample of a dataset as columns, in the source's order: id (int64 array), key, location,
    label, split, mode, sha256, reason, phash, dhash (lists), width, height (int64, −1 unknown), readable
    (bool, None counted readable), duplicate_of, near_duplicate_of (int64, −1 none)."""
    rows = session.execute(
        select(
            Sample.id,
            Sample.key,
            Sample.location,
            Sample.label,
            Sample.split,
            Sample.width,
            Sample.height,
            Sample.mode,
            Sample.sha256,
            Sample.readable,
            Sample.reason,
            Sample.duplicate_of,
            Sample.phash,
            Sample.dhash,
            Sample.near_duplicate_of,
        )
        .where(Sample.dataset_id == dataset_id)
        .order_by(Sample.position.is_(None), Sample.position, Sample.id)
    ).all()
    columns = list(zip(*rows, strict=True)) if rows else [()] * 15
    (ids, keys, locations, labels, splits, widths, heights, modes, hashes, readable, reasons, dups) = columns[:12]
    phashes, dhashes, near = columns[12:]
    return {
        "id": np.array(ids, dtype=np.int64),
        "key": list(keys),
        "location": list(locations),
        "label": list(labels),
        "split": list(splits),
        "width": np.array([-1 if w is None else w for w in widths], dtype=np.int64),
        "height": np.array([-1 if h is None else h for h in heights], dtype=np.int64),
        "mode": list(modes),
        "sha256": list(hashes),
        "readable": np.array([r is not False for r in readable], dtype=bool),
        "reason": list(reasons),
        "duplicate_of": np.array([-1 if d is None else d for d in dups], dtype=np.int64),
        "phash": list(phashes),
        "dhash": list(dhashes),
        "near_duplicate_of": np.array([-1 if d is None else d for d in near], dtype=np.int64),
    }


def get_samples(*, session: Session, sample_ids: Sequence[int]) -> dict[int, Sample]:
    """Sample rows by id (any dataset), e.g. for a case view or the nearest training images."""
    found: dict[int, Sample] = {}
    ids = list(sample_ids)
    for start in range(0, len(ids), CHUNK):
        for sample in session.scalars(select(Sample).where(Sample.id.in_(ids[start : start + CHUNK]))):
            found[sample.id] = sample
    return found


def dataset_summary(*, session: Session, dataset_id: int) -> dict[str, Any]:
    """Counts for the Data page: samples, by label, by split, unreadable (with reasons), duplicates."""

    def counts(column) -> dict[str | None, int]:
        rows = session.execute(
            select(column, func.count()).where(Sample.dataset_id == dataset_id).group_by(column).order_by(column)
        ).all()
        return {value: n for value, n in rows}

    unreadable = session.execute(
        select(Sample.id, Sample.key, Sample.reason)
        .where(Sample.dataset_id == dataset_id, Sample.readable.is_(False))
        .order_by(Sample.key)
    ).all()
    duplicates = session.scalar(
        select(func.count()).where(Sample.dataset_id == dataset_id, Sample.duplicate_of.is_not(None))
    )
    by_split = counts(Sample.split)
    return {
        "samples": sum(by_split.values()),
        "by_label": counts(Sample.label),
        "by_split": by_split,
        "unreadable": [{"sample_id": i, "key": k, "reason": r} for i, k, r in unreadable],
        "duplicates": int(duplicates or 0),
    }


def write_thumbnails(*, session: Session, pngs: Mapping[int, bytes], size: int) -> None:
    """Store (or replace) PNG thumbnails by sample id."""
    ids = list(pngs)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        session.execute(Thumbnail.__table__.delete().where(Thumbnail.__table__.c.sample_id.in_(chunk)))
        session.execute(Thumbnail.__table__.insert(), [{"sample_id": i, "size": size, "png": pngs[i]} for i in chunk])


def read_thumbnails(*, session: Session, sample_ids: Sequence[int]) -> dict[int, bytes]:
    """PNG bytes by sample id; samples without a thumbnail (unreadable) are absent."""
    found: dict[int, bytes] = {}
    ids = list(sample_ids)
    for start in range(0, len(ids), CHUNK):
        rows = session.execute(
            select(Thumbnail.sample_id, Thumbnail.png).where(Thumbnail.sample_id.in_(ids[start : start + CHUNK]))
        )
        found.update({sample_id: png for sample_id, png in rows})
    return found
