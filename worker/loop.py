"""The queue loop: recover stale jobs, claim the next one of its lane, run it to its end, and again until stopped."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from sqlalchemy.exc import DBAPIError as SQLAlchemyDBAPIError
from sqlalchemy.orm import Session, sessionmaker

from db import datasets, job_reads, jobs
from db.jobs import STALE_AFTER_S, Claim, LostClaim
from db.roots import resolve_within_roots
from db.session import DatabaseError, open_database, parse_url, shown
from engine.sources import open_source
from engine.train import TrainingCancelled
from worker.kinds import KINDS
from worker.live import HEARTBEAT_S, Interrupted, JobRun
from worker.process import handle_signals, setup_logging, take_local_lock, watch_parent

log = logging.getLogger("con2.worker")


def run_worker(
    url: str | None = None,
    *,
    once: bool = False,
    poll_s: float = 1.0,
    worker_id: str | None = None,
    stale_after_s: float = STALE_AFTER_S,
    heartbeat_s: float = HEARTBEAT_S,
    max_jobs: int | None = None,
    lane: str | None = None,
) -> int:
    """Serve the job queue of the database at `url` (None = the default SQLite file) until stopped.

    lane: claim only that lane's kinds (`db.jobs.LANES`); None: every kind, one job at a time.
    once: return when the queue (of the lane) is empty; a job waiting for its dataset's registration is waited
    for (the quick lane runs that). poll_s: seconds between polls of an empty queue.
    stale_after_s: a running job without a heartbeat for this long is recovered (keep it well above
    the heartbeat interval of every worker on this database). Returns the number of jobs run.
    Raises DatabaseError when the database cannot be opened or upgraded.
    """
    setup_logging()
    kinds = jobs.LANES[lane] if lane is not None else None
    worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
    lock = take_local_lock()
    if lock is False:
        log.info("another local worker is already running; %s exits", worker_id)
        return 0
    sessions = open_database(url)
    stop = threading.Event()
    restore = handle_signals(stop)
    parent_gone = watch_parent(stop)
    serves = f"the {lane} lane ({', '.join(kinds)})" if kinds else "every kind of job"
    log.info("worker %s serving %s: %s", worker_id, shown(parse_url(url)), serves)
    recover_every = max(1.0, min(10.0, stale_after_s / 2))
    last_recovery, done = -float("inf"), 0
    try:
        while not stop.is_set():
            parent_gone()
            try:
                if time.monotonic() - last_recovery >= recover_every:
                    last_recovery = time.monotonic()
                    with sessions.begin() as session:
                        recovered = jobs.recover_stale(session=session, stale_after_s=stale_after_s)
                    for job_id, status in recovered:
                        log.warning("job %d: its worker stopped responding; now %s", job_id, status)
                with sessions.begin() as session:
                    claim = jobs.claim(session=session, worker_id=worker_id, kinds=kinds)
                    # --once: a job passed over only while its dataset's registration runs (in the other lane) is
                    # still this lane's to run, so the queue is not empty yet
                    waiting = (
                        once and claim is None and bool(jobs.waiting_for_registration(session=session, kinds=kinds))
                    )
            except (DatabaseError, SQLAlchemyDBAPIError) as error:  # locked past the busy timeout, a full disk:
                log.warning("%s", " ".join(str(error).split())[:300])  # the worker waits, it does not die
                stop.wait(poll_s)
                continue
            if claim is None:
                if once and not waiting:
                    break
                stop.wait(poll_s)
                continue
            run_job(sessions, claim, stop=stop, heartbeat_s=heartbeat_s)
            done += 1
            if max_jobs is not None and done >= max_jobs:
                break
    finally:
        restore()
        sessions.kw["bind"].dispose()
        if lock is not None:
            lock.close()
    log.info("worker %s stops after %d job(s)", worker_id, done)
    return done


def run_job(
    sessions: sessionmaker[Session],
    claim: Claim,
    *,
    stop: threading.Event | None = None,
    heartbeat_s: float = HEARTBEAT_S,
) -> str:
    """Run one claimed job to its end; returns the status it ended in ("lost" when taken over)."""
    with sessions.begin() as session:
        job = job_reads.get_job(session=session, job_id=claim.job_id)
        dataset = datasets.get_dataset(session=session, dataset_id=job.dataset_id) if job else None
    if job is None or dataset is None:
        return "lost"
    run = JobRun(sessions, claim, job, stop or threading.Event())
    log.info(
        "job %d (%s, attempt %d) started: dataset %d %s", job.id, job.kind, claim.attempt, dataset.id, dataset.location
    )
    heart = threading.Thread(target=run.beat, args=(heartbeat_s,), name=f"heartbeat-{job.id}", daemon=True)
    heart.start()
    try:
        _check_roots(dataset.location)
        KINDS[job.kind](run, job, dataset)
        status = "succeeded"
    except LostClaim:
        run.lost.set()
        status = run.stop_job()
    except (Interrupted, TrainingCancelled):
        status = run.stop_job()
    except Exception as error:  # any failure ends this job, never the worker
        status = run.fail_job(error)
    finally:
        run.done.set()
        heart.join()
    log.info("job %d %s%s", job.id, status, f": {run.reason}" if run.reason else "")
    return status


def _check_roots(location: str) -> None:
    """Refuse (OutsideRoots) a dataset outside this worker's data roots, and a manifest naming files outside
    them: a row in the database is no proof that the server may read a path (another app, an old row)."""
    resolve_within_roots(location)
    if location.lower().endswith(".csv"):
        source = open_source(location)
        try:
            for ref in source.refs():
                resolve_within_roots(ref.location)
        finally:
            source.close()
