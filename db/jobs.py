"""The job queue: submit, claim exactly once, heartbeat and progress, cancel, finish, recover.

Life of a job:

    queued ──claim──> running ──finish──> succeeded
      │                  │ ├────fail────> failed
      │                  │ └──cancel────> cancelled          (the worker saw cancel_requested)
      └──request_cancel──┼──────────────> cancelled          (never started)
                         └─recover_stale─> queued | failed   (its worker stopped heart-beating)

A worker serves the queue in lanes (`LANES`): a training run takes minutes to hours, registering and scoring
seconds to minutes, so each lane claims only its own kinds (`claim(kinds=...)`) and a quick job never waits
behind a training run. A train or score job never starts while an older registration of its dataset is
queued or running: it would read a dataset whose samples are still being written.

A claim is one atomic statement: `UPDATE jobs ... WHERE id = (SELECT id ... LIMIT 1 FOR UPDATE SKIP
LOCKED) AND status = 'queued' RETURNING id` (SKIP LOCKED on PostgreSQL, where several workers wait
on one queue; on SQLite the statement holds the write lock). Each claim increments `attempts`, and
every later write of the worker is conditional on (job, worker, attempt) still holding: a worker
that was presumed dead and replaced can no longer write anything (`LostClaim`).

Every function takes the caller's session and never commits. The queue's reads live in `db/job_reads.py`
and the typed submit helpers of each kind in `db/job_submit.py`; what stays here is the state machine, whose
transitions share its claim conditions (`_held`, `_update_held`): about 430 lines, kept together so that every
write a worker makes is checked against one definition of holding its claim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Row, exists, func, literal, select, update
from sqlalchemy.orm import Session, aliased

from db.job_configs import (
    CONFIGS,
    JobConfig,
    TrainJobConfig,
    read_config,
    to_json,
)
from db.models import FINISHED, JOB_KINDS, SQLITE_NOW, Dataset, Job, JobEvent, UTCDateTime, utcnow

DEFAULT_MAX_ATTEMPTS = 3
STALE_AFTER_S = 60.0  # a running job without a heartbeat for this long is presumed orphaned
ACTIVE = ("queued", "running")
# The kinds each lane of a worker claims, one job at a time per lane: trainings in one, the quick jobs
# (registering a dataset, scoring one with a finished run) in the other, so they never queue behind a training.
LANES: dict[str, tuple[str, ...]] = {"train": ("train",), "quick": ("register", "score")}


def lane_of(kind: str) -> str:
    """The lane that runs jobs of `kind`."""
    return next(lane for lane, kinds in LANES.items() if kind in kinds)


class JobError(ValueError):
    """A request the queue refuses (scoring with an unfinished run, deleting a running job); one line."""


class LostClaim(RuntimeError):
    """The job is no longer this worker's: it was recovered, cancelled or finished elsewhere."""


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a running job; writes made under it succeed only while it still holds."""

    job_id: int
    worker_id: str
    attempt: int


def _now(session: Session, minus_s: float = 0.0) -> ColumnElement[Any]:
    """Now (less `minus_s` seconds), read when the database runs the statement. PostgreSQL: the server's clock,
    so that workers on several machines agree on what is stale. SQLite (which only this machine can open): this
    machine's clock through db.session's `SQLITE_NOW()`, read once SQLite holds the write lock, so a time stamped
    after waiting for another transaction is never earlier than that transaction's own (a training claimed while
    its registration was ending once seemed to start 4 ms before the registration finished). A cut-off
    (`minus_s` > 0) is bound from Python: it orders nothing, it only has to be about right."""
    if session.get_bind().dialect.name == "postgresql":
        return func.statement_timestamp(type_=DateTime(timezone=True)) - timedelta(seconds=minus_s)
    if minus_s:
        return literal(utcnow() - timedelta(seconds=minus_s), UTCDateTime())
    return getattr(func, SQLITE_NOW)(type_=UTCDateTime())


def _held(claim: Claim) -> tuple[ColumnElement[bool], ...]:
    return (
        Job.id == claim.job_id,
        Job.status == "running",
        Job.worker_id == claim.worker_id,
        Job.attempts == claim.attempt,
    )


def _event(session: Session, job_id: int, event: str, *, worker_id=None, attempt=None, detail=None) -> None:
    session.add(JobEvent(job_id=job_id, event=event, worker_id=worker_id, attempt=attempt, detail=detail))


def _update_held(session: Session, claim: Claim, **values: Any) -> Row[tuple[int, bool]]:
    """Update the claimed job's row and return its (id, cancel_requested), or raise LostClaim when
    the claim no longer holds."""
    row = session.execute(
        update(Job)
        .where(*_held(claim))
        .values(**values)
        .returning(Job.id, Job.cancel_requested)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        raise LostClaim(f"job {claim.job_id} is no longer held by {claim.worker_id} (attempt {claim.attempt})")
    return row


# ---------------------------------------------------------------------------------------------- submitting


def submit(
    *,
    session: Session,
    kind: str,
    dataset_id: int,
    config: JobConfig | None = None,
    parent_id: int | None = None,
    name: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> Job:
    """Queue a job of `kind` (register, train, score) on a dataset. Prefer the kind-specific helpers.

    `config`: the kind's config (db.job_configs; None = its defaults), stored as JSON. A train job's
    `data["source"]` is set here, the one place a job's dataset location is looked up when it is queued.
    """
    if kind not in JOB_KINDS:
        raise JobError(f"unknown job kind {kind!r}; choose one of {', '.join(JOB_KINDS)}")
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise JobError(f"no dataset {dataset_id}")
    if max_attempts < 1:
        raise JobError(f"max_attempts must be at least 1, got {max_attempts}")
    config = CONFIGS[kind]() if config is None else config
    if not isinstance(config, CONFIGS[kind]):
        raise JobError(f"a {kind} job needs a {CONFIGS[kind].__name__}, not a {type(config).__name__}")
    if isinstance(config, TrainJobConfig):
        config = config.at(dataset.location)  # the images are the dataset's, whatever the run config said
    job = Job(
        kind=kind,
        status="queued",
        name=name,
        dataset_id=dataset_id,
        parent_id=parent_id,
        config=to_json(config),
        max_attempts=max_attempts,
        message="waiting for a worker",
        created_at=utcnow(),
    )
    session.add(job)
    session.flush()
    _event(session, job.id, "submitted")
    return job


def read_job_config(job: Job) -> JobConfig:
    """The job's config as its kind's dataclass (db.job_configs); raises JobConfigError on one it cannot read."""
    return read_config(job.kind, job.config)


# ---------------------------------------------------------------------------------------------- the worker's side


def waiting_for_registration(*, session: Session, kinds: Sequence[str] | None = None) -> list[int]:
    """Queued jobs (of `kinds`) that `claim` passes over until an older registration of their dataset ends."""
    query = select(Job.id).where(Job.status == "queued", Job.kind != "register", _registering(Job))
    if kinds is not None:
        query = query.where(Job.kind.in_(list(kinds)))
    return list(session.scalars(query.order_by(Job.id)))


def _registering(job: type[Job]) -> ColumnElement[bool]:
    """Whether an older registration of `job`'s dataset is queued or running (a train or score job waits for it)."""
    earlier = aliased(Job)
    return exists().where(
        earlier.dataset_id == job.dataset_id,
        earlier.kind == "register",
        earlier.status.in_(ACTIVE),
        earlier.id < job.id,
    )


def claim(*, session: Session, worker_id: str, kinds: Sequence[str] | None = None) -> Claim | None:
    """Take the oldest queued job of `kinds` (None: of any kind) for this worker, atomically; None when
    there is none it may start. A train or score job is passed over while an older registration of its
    dataset is queued or running.

    Exactly one worker gets each job: PostgreSQL skips rows another transaction has locked; SQLite
    runs the statement under its single write lock.
    """
    now = _now(session)
    pick = select(Job.id).where(Job.status == "queued", (Job.kind == "register") | ~_registering(Job))
    if kinds is not None:
        unknown = sorted(set(kinds) - set(JOB_KINDS))
        if unknown:
            raise JobError(f"unknown job kind {', '.join(unknown)}; choose from {', '.join(JOB_KINDS)}")
        pick = pick.where(Job.kind.in_(list(kinds)))
    pick = pick.order_by(Job.created_at, Job.id).limit(1).with_for_update(skip_locked=True)
    row = session.execute(
        update(Job)
        .where(Job.id == pick.scalar_subquery(), Job.status == "queued")
        .values(
            status="running",
            worker_id=worker_id,
            attempts=Job.attempts + 1,
            started_at=func.coalesce(Job.started_at, now),
            heartbeat_at=now,
            phase=None,
            eta_s=None,
            message=f"started by {worker_id}",
        )
        .returning(Job.id, Job.attempts)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        return None
    _event(session, row.id, "claimed", worker_id=worker_id, attempt=row.attempts)
    return Claim(row.id, worker_id, row.attempts)


def heartbeat(*, session: Session, claim: Claim) -> bool:
    """Record that the worker is alive; returns whether a cancel was requested. Raises LostClaim."""
    return bool(_update_held(session, claim, heartbeat_at=_now(session)).cancel_requested)


def report_progress(
    *,
    session: Session,
    claim: Claim,
    progress: float,
    phase: str,
    eta_s: float | None = None,
    message: str | None = None,
    device: str | None = None,
    summary: Mapping[str, Any] | None = None,
) -> bool:
    """Update the live status (progress 0..1 of the whole job); returns whether a cancel was requested.

    `summary`: what the running job already knows of its result (a training run's settings as it trains, every
    `auto` resolved); `finish` replaces it with the whole summary. Also counts as a heartbeat. Raises LostClaim
    when the job is no longer this worker's.
    """
    values: dict[str, Any] = {
        "progress": min(max(float(progress), 0.0), 1.0),
        "phase": phase,
        "eta_s": eta_s,
        "heartbeat_at": _now(session),
    }
    if message is not None:
        values["message"] = message
    if device is not None:
        values["device"] = device
    if summary is not None:
        values["summary"] = dict(summary)
    return bool(_update_held(session, claim, **values).cancel_requested)


def set_checkpoint(*, session: Session, claim: Claim, location: str) -> None:
    """Name the job's latest checkpoint (e.g. db://artifacts/12). Raises LostClaim."""
    _update_held(session, claim, checkpoint=location, heartbeat_at=_now(session))


def finish(*, session: Session, claim: Claim, summary: Mapping[str, Any] | None = None, message: str = "done") -> None:
    """Mark the job succeeded with the engine's summary. Raises LostClaim."""
    _update_held(
        session,
        claim,
        status="succeeded",
        progress=1.0,
        phase=None,
        eta_s=None,
        message=message,
        summary=dict(summary) if summary is not None else None,
        finished_at=_now(session),
        checkpoint=None,
    )
    _event(session, claim.job_id, "succeeded", worker_id=claim.worker_id, attempt=claim.attempt)


def fail(*, session: Session, claim: Claim, reason: str, traceback: str | None = None) -> None:
    """Mark the job failed with a one-line reason (and the traceback for debugging). Raises LostClaim."""
    reason = " ".join(reason.split()) or "failed"
    _update_held(
        session,
        claim,
        status="failed",
        phase=None,
        eta_s=None,
        message=reason,
        error=reason,
        traceback=traceback,
        finished_at=_now(session),
    )
    _event(session, claim.job_id, "failed", worker_id=claim.worker_id, attempt=claim.attempt, detail=reason)


def mark_cancelled(*, session: Session, claim: Claim, message: str = "cancelled") -> None:
    """The worker stopped the job because a cancel was requested. Raises LostClaim."""
    _update_held(session, claim, status="cancelled", phase=None, eta_s=None, message=message, finished_at=_now(session))
    _event(session, claim.job_id, "cancelled", worker_id=claim.worker_id, attempt=claim.attempt, detail=message)


def release(*, session: Session, claim: Claim, reason: str) -> None:
    """Put a running job back in the queue (its worker is shutting down); it resumes from its checkpoint.

    A release is not a failure, so it does not use up one of the job's attempts.
    """
    _update_held(
        session,
        claim,
        status="queued",
        worker_id=None,
        heartbeat_at=None,
        phase=None,
        eta_s=None,
        message=reason,
        max_attempts=Job.max_attempts + 1,
    )
    _event(session, claim.job_id, "released", worker_id=claim.worker_id, attempt=claim.attempt, detail=reason)


def recover_stale(*, session: Session, stale_after_s: float = STALE_AFTER_S) -> list[tuple[int, str]]:
    """Requeue running jobs whose worker stopped heart-beating, or fail them after `max_attempts` claims.

    A requeued train job resumes from its last checkpoint. Safe to call from several workers at once:
    each job is recovered by exactly one. Returns (job id, new status) for every job recovered.
    """
    now, cutoff = _now(session), _now(session, stale_after_s)
    stale = session.execute(
        select(Job.id, Job.attempts, Job.max_attempts, Job.worker_id, Job.cancel_requested).where(
            Job.status == "running", (Job.heartbeat_at < cutoff) | Job.heartbeat_at.is_(None)
        )
    ).all()
    recovered = []
    for job in stale:
        gone = f"worker {job.worker_id} stopped responding (no heartbeat for {stale_after_s:g} s)"
        if job.cancel_requested:
            status, values = "cancelled", {"message": f"cancelled; {gone}", "finished_at": now}
        elif job.attempts >= job.max_attempts:
            reason = f"{gone} on attempt {job.attempts} of {job.max_attempts}; giving up"
            status, values = "failed", {"message": reason, "error": reason, "finished_at": now}
        else:
            status, values = "queued", {"message": f"requeued: {gone}; resumes from its last checkpoint"}
        row = session.execute(
            update(Job)
            .where(
                Job.id == job.id,
                Job.status == "running",
                Job.attempts == job.attempts,
                (Job.heartbeat_at < cutoff) | Job.heartbeat_at.is_(None),
            )
            .values(status=status, worker_id=None, heartbeat_at=None, phase=None, eta_s=None, **values)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        ).first()
        if row is not None:
            event = "requeued" if status == "queued" else status
            _event(session, job.id, event, worker_id=job.worker_id, attempt=job.attempts, detail=values["message"])
            recovered.append((job.id, status))
    return recovered


# ---------------------------------------------------------------------------------------------- the user's side


def request_cancel(*, session: Session, job_id: int) -> str:
    """Cancel a job: a queued one at once, a running one within seconds (its worker sees the flag).

    Returns the job's status afterwards ("cancelled", or "running" until the worker stops it); a
    finished job is left as it is.
    """
    now = _now(session)
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="cancelled", finished_at=now, message="cancelled before it started", cancel_requested=True)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).first()
    if row is not None:
        _event(session, job_id, "cancelled", detail="cancelled before it started")
        return "cancelled"
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running")
        .values(cancel_requested=True)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).first()
    if row is not None:
        _event(session, job_id, "cancel_requested")
        return "running"
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    if status is None:
        raise JobError(f"no job {job_id}")
    return status


def cancel_requested(*, session: Session, job_id: int) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def retry(*, session: Session, job_id: int) -> Job:
    """Queue a failed or cancelled job again; a train job resumes from its last checkpoint."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobError(f"no job {job_id}")
    if job.status not in ("failed", "cancelled"):
        raise JobError(f"job {job_id} is {job.status}; only failed or cancelled jobs can be retried")
    job.status = "queued"
    job.cancel_requested = False
    job.error = job.traceback = job.finished_at = None
    job.progress, job.phase, job.eta_s, job.message = 0.0, None, None, "requeued by a user"
    job.max_attempts = job.attempts + DEFAULT_MAX_ATTEMPTS
    session.flush()
    _event(session, job_id, "retried")
    return job


def delete_job(*, session: Session, job_id: int) -> None:
    """Delete a job that is not running, with everything it produced (and score jobs made with it)."""
    job = session.get(Job, job_id)
    if job is None:
        return
    if job.status == "running":
        raise JobError(f"job {job_id} is running; cancel it first")
    if session.scalar(select(func.count()).where(Job.parent_id == job_id, Job.status == "running")):
        raise JobError(f"a score job made with run {job_id} is running; cancel it first")
    session.delete(job)
    session.flush()


def is_finished(status: str) -> bool:
    return status in FINISHED
