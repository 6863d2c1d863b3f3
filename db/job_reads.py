"""Reading the job queue without changing it: a job, a filtered list, counts, a queued job's place, a job's history.

The transitions that change a job's state are `db/jobs.py`; these functions only read, so the pages and the
worker can ask what the queue holds without touching its claim conditions. Every function takes the caller's
session and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from db.jobs import ACTIVE, LANES, lane_of
from db.models import Job, JobEvent


def get_job(*, session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id, populate_existing=True)


def list_jobs(
    *,
    session: Session,
    kind: str | None = None,
    status: str | Sequence[str] | None = None,
    dataset_id: int | None = None,
    parent_id: int | None = None,
    limit: int | None = None,
) -> list[Job]:
    """Jobs, newest first, optionally filtered."""
    query: Select[tuple[Job]] = select(Job).order_by(Job.created_at.desc(), Job.id.desc())
    if kind is not None:
        query = query.where(Job.kind == kind)
    if status is not None:
        query = query.where(Job.status.in_([status] if isinstance(status, str) else list(status)))
    if dataset_id is not None:
        query = query.where(Job.dataset_id == dataset_id)
    if parent_id is not None:
        query = query.where(Job.parent_id == parent_id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query.execution_options(populate_existing=True)))


def count_active(*, session: Session, kind: str | None = None) -> int:
    """How many jobs (of `kind`, or of any kind) are queued or running."""
    query = select(func.count()).select_from(Job).where(Job.status.in_(ACTIVE))
    if kind is not None:
        query = query.where(Job.kind == kind)
    return int(session.scalar(query) or 0)


def job_state(*, session: Session, job_id: int) -> tuple[str, datetime | None, float | None] | None:
    """A job's (status, finished_at, progress), read without loading the row; None when it is gone."""
    row = session.execute(select(Job.status, Job.finished_at, Job.progress).where(Job.id == job_id)).one_or_none()
    return None if row is None else (row[0], row[1], row[2])


@dataclass(frozen=True)
class Waiting:
    """Why a queued job has not started: what runs or waits before it in its lane, or the registration it waits for."""

    lane: str
    ahead: int  # jobs of its lane running or queued before it
    registration: int | None  # an older register job of its dataset, queued or running: it starts after that one


def waiting(*, session: Session) -> dict[int, Waiting]:
    """Every queued job's place in the queue, by job id, counted the way `claim` takes jobs (oldest first, per
    lane). With several workers on one database, `ahead` counts every worker's jobs of the lane."""
    active = session.execute(
        select(Job.id, Job.kind, Job.status, Job.dataset_id)
        .where(Job.status.in_(ACTIVE))
        .order_by(Job.created_at, Job.id)
    ).all()
    places: dict[int, Waiting] = {}
    before = dict.fromkeys(LANES, 0)  # running or older queued jobs per lane, so far
    registering: dict[int, int] = {}  # dataset → its oldest active register job
    for job in sorted(active, key=lambda j: j.status != "running"):  # running ones first: they are ahead of all
        lane = lane_of(job.kind)
        if job.status == "queued":
            older = registering.get(job.dataset_id)
            wait_for = older if job.kind != "register" and older is not None and older < job.id else None
            places[job.id] = Waiting(lane, before[lane], wait_for)
        before[lane] += 1
        if job.kind == "register":
            registering[job.dataset_id] = min(job.id, registering.get(job.dataset_id, job.id))
    return places


def job_events(*, session: Session, job_id: int) -> list[JobEvent]:
    """A job's history, oldest first."""
    return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))
