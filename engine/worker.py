"""The worker: the one bridge between the engine and the database.

    claim a queued job → run it through the engine → progress, metrics, checkpoints while it runs
                       → scores, embeddings, 2-D projections in bulk → succeeded / failed / cancelled

`run_worker` is `con2 worker`: it serves the queue until stopped. A background thread heartbeats
every few seconds; a job whose worker stopped heart-beating is recovered by any other worker
(requeued and resumed from its last checkpoint, or failed after its last attempt). Cancel is a flag
on the job row that the progress callback sees within about a second; SIGTERM/SIGINT put the
running job back in the queue. Every write the worker makes is conditional on still holding the
job (`db.jobs.Claim`), so a worker presumed dead can never write over its successor.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from PIL import Image
from sqlalchemy.exc import DBAPIError as SQLAlchemyDBAPIError
from sqlalchemy.orm import Session, sessionmaker

from db import artifacts, datasets, jobs, results
from db.jobs import STALE_AFTER_S, Claim, JobError, LostClaim
from db.models import Dataset, Job
from db.roots import OutsideRoots, resolve_within_roots
from db.session import DatabaseError, data_dir, open_database, parse_url, shown
from engine.artifacts import Bundle
from engine.checkpoint import from_bytes, to_bytes
from engine.config import ConfigError, RunConfig, ScoreConfig, build
from engine.data import DataError, SampleRef
from engine.images import UnreadableImage, decode
from engine.inventory import inventory
from engine.projection import project
from engine.run import Phase, score_run, train_run
from engine.scoring import NonFiniteFeatures
from engine.sources import open_source
from engine.train import CheckpointMismatch, NonFiniteLoss, StepReport, TrainingCancelled, resolve_device
from engine.tta import ScoreResult

HEARTBEAT_S = 2.0  # how often a running job's row is touched from a background thread
PROGRESS_EVERY_S = 1.0  # at most one progress write (and cancel check) per second
STEP_METRICS_EVERY_S = 0.5  # at most two step rows per second; every epoch end is kept too
WRITE_CHUNK = 20_000  # samples per results transaction: keeps SQLite's write lock short
THUMBNAIL_CHUNK = 512
FAIL_RETRY_FIRST_S, FAIL_RETRY_MAX_S = 0.5, 5.0  # backoff while the database refuses to record a failure
LOCK_ENV = "CON2_WORKER_LOCK"  # set by start_local_worker: the lock file that keeps one local worker

# Share of a job's progress bar each phase takes (start, width).
PHASES = {
    "register": {"inventory": (0.0, 0.5), "thumbnails": (0.5, 0.45), "writing": (0.95, 0.05)},
    "train": {
        "loading": (0.0, 0.05),
        "training": (0.05, 0.8),
        "scoring": (0.85, 0.08),
        "projecting": (0.93, 0.04),
        "writing": (0.97, 0.03),
    },
    "score": {"loading": (0.0, 0.3), "scoring": (0.3, 0.55), "projecting": (0.85, 0.1), "writing": (0.95, 0.05)},
}

log = logging.getLogger("con2.worker")


class Interrupted(Exception):
    """The job must stop now: cancel requested, claim lost, or the worker is shutting down."""


# ---------------------------------------------------------------------------------------------- the loop


def run_worker(
    url: str | None = None,
    *,
    once: bool = False,
    poll_s: float = 1.0,
    worker_id: str | None = None,
    stale_after_s: float = STALE_AFTER_S,
    heartbeat_s: float = HEARTBEAT_S,
    max_jobs: int | None = None,
) -> int:
    """Serve the job queue of the database at `url` (None = the default SQLite file) until stopped.

    once: return when the queue is empty. poll_s: seconds between polls of an empty queue.
    stale_after_s: a running job without a heartbeat for this long is recovered (keep it well above
    the heartbeat interval of every worker on this database). Returns the number of jobs run.
    Raises DatabaseError when the database cannot be opened or upgraded.
    """
    _setup_logging()
    worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
    lock = _take_local_lock()
    if lock is False:
        log.info("another local worker is already running; %s exits", worker_id)
        return 0
    sessions = open_database(url)
    stop = threading.Event()
    restore = _handle_signals(stop)
    log.info("worker %s serving %s", worker_id, shown(parse_url(url)))
    recover_every = max(1.0, min(10.0, stale_after_s / 2))
    last_recovery, done = -float("inf"), 0
    try:
        while not stop.is_set():
            try:
                if time.monotonic() - last_recovery >= recover_every:
                    last_recovery = time.monotonic()
                    with sessions.begin() as session:
                        recovered = jobs.recover_stale(session=session, stale_after_s=stale_after_s)
                    for job_id, status in recovered:
                        log.warning("job %d: its worker stopped responding; now %s", job_id, status)
                with sessions.begin() as session:
                    claim = jobs.claim(session=session, worker_id=worker_id)
            except (DatabaseError, SQLAlchemyDBAPIError) as error:  # locked past the busy timeout, a full disk:
                log.warning("%s", " ".join(str(error).split())[:300])  # the worker waits, it does not die
                stop.wait(poll_s)
                continue
            if claim is None:
                if once:
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


def worker_command(url: str | None, **options: Any) -> int:
    """`con2 worker`: `run_worker`, with a database a user got wrong reported in one line (exit status 2)."""
    try:
        run_worker(url, **options)
    except DatabaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def run_job(
    sessions: sessionmaker[Session],
    claim: Claim,
    *,
    stop: threading.Event | None = None,
    heartbeat_s: float = HEARTBEAT_S,
) -> str:
    """Run one claimed job to its end; returns the status it ended in ("lost" when taken over)."""
    with sessions.begin() as session:
        job = jobs.get_job(session=session, job_id=claim.job_id)
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
        {"register": _register, "train": _train, "score": _score}[job.kind](run, job, dataset)
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


# ---------------------------------------------------------------------------------------------- one job


class JobRun:
    """The live side of one claimed job: progress and metrics (throttled), cancel, heartbeat, guards."""

    def __init__(self, sessions: sessionmaker[Session], claim: Claim, job: Job, stop: threading.Event) -> None:
        self.sessions, self.claim, self.job, self.stop = sessions, claim, job, stop
        self.phases = PHASES[job.kind]
        self.phase, self.fraction, self.eta_s, self.message = next(iter(self.phases)), 0.0, None, None
        self.cancel, self.lost, self.done = threading.Event(), threading.Event(), threading.Event()
        self.device: str | None = None
        self.reason: str | None = None
        self._metrics: list[dict[str, Any]] = []  # rows not yet written
        self._epoch: dict[str, float] = {}  # running sums of the current epoch
        self._last_flush = self._last_step_row = -float("inf")

    # -- state

    def interrupted(self) -> bool:
        return self.cancel.is_set() or self.lost.is_set() or self.stop.is_set()

    def check(self) -> None:
        if self.interrupted():
            raise Interrupted()

    def progress(self) -> float:
        start, width = self.phases.get(self.phase, (0.0, 0.0))
        return start + width * min(max(self.fraction, 0.0), 1.0)

    # -- writes, all conditional on the claim

    @contextmanager
    def held(self) -> Iterator[Session]:
        """A transaction that first proves the job is still ours, reports progress and writes the
        metrics gathered since the last one (kept for the next one if this one rolls back)."""
        pending, self._metrics = self._metrics, []
        try:
            with self.sessions.begin() as session:
                wanted = jobs.report_progress(
                    session=session,
                    claim=self.claim,
                    progress=self.progress(),
                    phase=self.phase,
                    eta_s=self.eta_s,
                    message=self.message,
                    device=self.device,
                )
                if wanted:
                    self.cancel.set()
                if pending:
                    job_id, attempt = self.claim.job_id, self.claim.attempt
                    results.write_metrics(session=session, job_id=job_id, attempt=attempt, rows=pending)
                yield session
        except BaseException:
            self._metrics = pending + self._metrics
            raise
        self._last_flush = time.monotonic()

    def flush(self, force: bool = False) -> None:
        """Write progress and pending metrics, at most once a second unless forced."""
        if not force and time.monotonic() - self._last_flush < PROGRESS_EVERY_S:
            return
        try:
            with self.held():
                pass
        except LostClaim:
            self.lost.set()

    def set_phase(
        self, phase: str, fraction: float = 0.0, message: str | None = None, eta_s: float | None = None
    ) -> None:
        self.phase, self.fraction, self.eta_s = phase, fraction, eta_s
        if message is not None:
            self.message = message

    def beat(self, every_s: float) -> None:
        """Heartbeat thread: touch the row every `every_s` seconds; notice cancel and lost claims."""
        while not self.done.wait(every_s):
            try:
                with self.sessions.begin() as session:
                    if jobs.heartbeat(session=session, claim=self.claim):
                        self.cancel.set()
            except LostClaim:
                self.lost.set()
                return
            except Exception as error:  # a busy database must not kill the heartbeat; the next one may pass
                log.warning("job %d: heartbeat failed: %s", self.claim.job_id, error)

    # -- the engine's one callback

    def on_progress(self, event: StepReport | Phase) -> bool:
        """Receives the engine's StepReport or Phase; returns False to make the engine stop."""
        if isinstance(event, Phase):
            self.set_phase(event.name, event.done / max(event.total, 1), f"{event.name} {event.done}/{event.total}")
        else:
            self._step(event)
        self.flush()
        return not self.interrupted()

    def _step(self, report: StepReport) -> None:
        now = time.monotonic()
        values = {
            "loss": report.loss,
            "loss_context": report.loss_context,
            "loss_content": report.loss_content,
            "alpha": report.alpha,
            "lr": report.lr,
            "images_per_s": report.images_per_s,
            "elapsed_s": report.elapsed_s,
        }
        sums = self._epoch
        sums["n"] = sums.get("n", 0) + 1
        for name in ("loss", "loss_context", "loss_content"):
            if values[name] is not None:
                sums[name] = sums.get(name, 0.0) + values[name]
        if report.epoch_end or report.step == 1 or now - self._last_step_row >= STEP_METRICS_EVERY_S:
            self._metrics.append({"kind": "step", "step": report.step, "epoch": report.epoch, **values})
            self._last_step_row = now
        if report.epoch_end:
            means = {
                name: (sums[name] / sums["n"] if name in sums else None)
                for name in ("loss", "loss_context", "loss_content")
            }
            self._metrics.append({"kind": "epoch", "step": report.step, "epoch": report.epoch, **values, **means})
            self._epoch = {}
        loss = f"loss {report.loss:.3f}"
        self.set_phase(
            "training",
            report.step / report.total_steps,
            f"epoch {report.epoch}/{report.epochs} · step {report.step}/{report.total_steps} · {loss}",
            report.eta_s,
        )

    # -- endings

    def stop_job(self) -> str:
        """After an interruption: cancelled (requested), released (worker stopping) or nothing (lost)."""
        if self.lost.is_set():
            self.reason = "taken over by another worker; wrote nothing more"
            return "lost"
        try:
            with self.sessions.begin() as session:
                if self.cancel.is_set() or jobs.cancel_requested(session=session, job_id=self.claim.job_id):
                    self.reason = f"cancelled while {self.phase}"
                    results.clear_results(session=session, job_id=self.claim.job_id)
                    jobs.mark_cancelled(session=session, claim=self.claim, message=self.reason)
                    return "cancelled"
                self.reason = "the worker is stopping; requeued to resume from its last checkpoint"
                jobs.release(session=session, claim=self.claim, reason=self.reason)
                return "queued"
        except LostClaim:
            return "lost"

    def fail_job(self, error: Exception) -> str:
        """Record the failure, retrying until the database takes the write (a full disk, a lock): a job
        must never stay 'running' with no worker. Gives up only when the worker is told to stop, leaving
        the job to stale-job recovery, or when the claim is lost."""
        self.reason = failure_reason(error)
        details = traceback.format_exc()
        delay = FAIL_RETRY_FIRST_S
        while True:
            try:
                with self.sessions.begin() as session:
                    results.clear_results(session=session, job_id=self.claim.job_id)
                    jobs.fail(session=session, claim=self.claim, reason=self.reason, traceback=details)
                return "failed"
            except LostClaim:
                return "lost"
            except Exception as write_error:  # the database itself is failing: wait for it to take writes again
                log.error(
                    "job %d: could not record the failure (%s): %s; retrying in %.1f s",
                    self.claim.job_id,
                    self.reason,
                    " ".join(str(write_error).split())[:300],
                    delay,
                )
            if self.stop.wait(delay):
                log.error("job %d: stopping before its failure was recorded; recovery will end it", self.claim.job_id)
                return "failed"
            delay = min(delay * 2, FAIL_RETRY_MAX_S)


def failure_reason(error: BaseException) -> str:
    """One line for the job row: a user-facing error as it is, anything else as 'TypeName: message'."""
    if isinstance(error, DataError | ConfigError | JobError | DatabaseError | OutsideRoots | NonFiniteFeatures
                  | CheckpointMismatch):  # fmt: skip
        text = str(error)
    elif isinstance(error, NonFiniteLoss):
        text = f"training diverged: {error}"
    elif isinstance(error, SQLAlchemyDBAPIError):  # the driver's own words, without the SQL statement
        text = f"the database refused a write: {error.orig}"
    else:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return " ".join(text.split())


class DatabaseCheckpoints:
    """`engine.checkpoint.CheckpointStore` in the database: any worker can resume the run.

    A save also writes the metrics gathered so far, in the same transaction, so every metric up to
    a checkpoint is as durable as the checkpoint itself.
    """

    def __init__(self, run: JobRun) -> None:
        self.run = run

    def load(self) -> dict[str, Any] | None:
        with self.run.sessions.begin() as session:
            blob = artifacts.load_artifact(session=session, job_id=self.run.claim.job_id, name="checkpoint")
        return None if blob is None else from_bytes(blob)

    def save(self, state: dict[str, Any]) -> None:
        blob = to_bytes(state)
        with self.run.held() as session:
            saved = artifacts.save_artifact(
                session=session, job_id=self.run.claim.job_id, name="checkpoint", data=blob, epoch=state.get("epoch")
            )
            jobs.set_checkpoint(session=session, claim=self.run.claim, location=artifacts.location(saved))


# ---------------------------------------------------------------------------------------------- job kinds


def _register(run: JobRun, job: Job, dataset: Dataset) -> None:
    """Inventory the source (hashes, sizes, readability, duplicates) and make thumbnails."""
    size = int(job.config.get("thumbnail_size", 64))
    max_pixels = int(job.config.get("max_pixels", 100_000_000))
    source = open_source(dataset.location)
    run.set_phase("inventory", 0.0, f"checking {len(source.refs())} images")
    run.flush(force=True)

    def on_inventory(done: int, total: int) -> None:
        run.set_phase("inventory", done / max(total, 1), f"checked {done}/{total} images")
        run.flush()

    inv = inventory(source, max_pixels=max_pixels, on_progress=on_inventory)
    run.check()  # the inventory itself cannot stop midway; honour a cancel as soon as it returns
    rows = [
        _sample_row(info.ref)
        | {
            "position": position,
            "width": info.width,
            "height": info.height,
            "mode": info.mode,
            "num_bytes": info.num_bytes,
            "sha256": info.sha256,
            "readable": info.readable,
            "reason": info.reason,
        }
        for position, info in enumerate(inv.samples)
    ]
    run.set_phase("thumbnails", 0.0, "writing samples")
    with run.held() as session:
        datasets.record_source(
            session=session,
            dataset_id=dataset.id,
            kind=inv.kind,
            label_origin=inv.label_origin,
            split_origin=inv.split_origin,
        )
        ids = datasets.upsert_samples(session=session, dataset_id=dataset.id, samples=rows)
        missing = datasets.mark_missing(session=session, dataset_id=dataset.id, present=ids)
        datasets.mark_duplicates(session=session, dataset_id=dataset.id, groups=inv.duplicates)
        results.refresh_statistics(session=session)
    readable = [info.ref for info in inv.samples if info.readable]
    made = 0
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start in range(0, len(readable), THUMBNAIL_CHUNK):
            run.check()
            chunk = readable[start : start + THUMBNAIL_CHUNK]
            pngs = {
                ids[ref.sample_id]: png
                for ref, png in zip(
                    chunk, pool.map(lambda r: _thumbnail(source, r, size, max_pixels), chunk), strict=True
                )
                if png
            }
            made += len(pngs)
            run.set_phase(
                "thumbnails", (start + len(chunk)) / len(readable), f"thumbnails {start + len(chunk)}/{len(readable)}"
            )
            with run.held() as session:
                datasets.write_thumbnails(session=session, pngs=pngs, size=size)
    source.close()
    summary = {
        "samples": len(inv.samples),
        "unreadable": len(inv.unreadable),
        "duplicate_groups": len(inv.duplicates),
        "duplicates": sum(len(group) - 1 for group in inv.duplicates),
        "thumbnails": made,
        "missing_since_last_registration": missing,
        "rejected": [{"entry": s.ref.sample_id, "reason": s.reason} for s in inv.rejected[:100]],
        "by_label": {str(k): v for k, v in inv.by_label.items()},
        "by_split": {str(k): v for k, v in inv.by_split.items()},
    }
    run.set_phase("writing", 1.0)
    with run.held() as session:
        jobs.finish(session=session, claim=run.claim, summary=summary, message=f"registered {len(inv.samples)} images")


def _thumbnail(source: Any, ref: SampleRef, size: int, max_pixels: int) -> bytes | None:
    """A size×size PNG through the engine's decoding (16-bit, alpha, palettes handled like training)."""
    try:
        pixels = decode(source.read(ref), size, max_pixels=max_pixels)  # (C, S, S) uint8
    except UnreadableImage:
        return None
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _train(run: JobRun, job: Job, dataset: Dataset) -> None:
    """Train (resuming from the job's checkpoint), score, project, write everything."""
    config = RunConfig.from_dict(job.config)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, source=dataset.location))
    run.device = str(resolve_device(config.train.device))
    with run.held() as session:
        saved = artifacts.artifact_info(session=session, job_id=job.id, name="checkpoint")
        resumed = (saved.epoch or 0) if saved is not None else 0
        results.delete_metrics_after(session=session, job_id=job.id, epoch=resumed)  # those epochs train again
    if resumed:
        log.info("job %d resumes after epoch %d", job.id, resumed)
    result = train_run(config, on_progress=run.on_progress, checkpoints=DatabaseCheckpoints(run))
    run.flush(force=True)
    run.check()
    coords = _project(run, result.scores, job.config.get("projections", jobs.PROJECTIONS), config.train.seed)
    bundle = Bundle(result.trained, result.bank, config.data).to_bytes()
    summary = {
        **result.metrics,
        "history": result.trained.history,
        "resumed_from_epoch": resumed,
        "n_skipped": len(result.skipped),
        "skipped": [{"key": s.ref.sample_id, "reason": s.reason} for s in result.skipped[:100]],
    }
    _store(
        run,
        scored=result.scored.refs,
        scored_dataset=dataset.id,
        bank=result.bank.refs,
        bank_dataset=dataset.id,
        scores=result.scores,
        coords=coords,
        skipped=[(s.ref, s.reason) for s in result.skipped],
        bundle=bundle,
        summary=summary,
    )


def _score(run: JobRun, job: Job, dataset: Dataset) -> None:
    """Score a dataset with a finished run's model and training bank, without retraining."""
    with run.sessions() as session:  # reads only: no write lock while a large bundle loads
        parent = jobs.get_job(session=session, job_id=job.parent_id) if job.parent_id else None
        if parent is None or parent.kind != "train" or parent.status != "succeeded":
            raise JobError(f"score job {job.id} needs a succeeded training run as its parent")
        bank_dataset = datasets.get_dataset(session=session, dataset_id=parent.dataset_id)
        blob = artifacts.load_artifact(session=session, job_id=parent.id, name="bundle")
    if blob is None:
        raise JobError(f"run {parent.id} has no stored model to score with")
    bundle = Bundle.from_bytes(blob, device="auto")
    run.device = str(bundle.trained.device)
    score = build(ScoreConfig, job.config.get("score") or {})
    data = dataclasses.replace(
        bundle.data,
        source=dataset.location,
        score_split=job.config.get("split"),
        normal_label=job.config.get("normal_label"),
    )

    def on_overlap(count: int, total: int) -> None:
        if count:  # said before scoring starts, in the job's live message, and counted in its summary
            run.message = f"{count} of the {total} images are this model's training images: scored leave-one-out"
            log.info("job %d: %s", job.id, run.message)
            run.flush(force=True)

    scored, scores, skipped, metrics = score_run(
        bundle.trained,
        bundle.bank,
        data,
        score,
        bank_source=bank_dataset.location,
        on_progress=run.on_progress,
        on_overlap=on_overlap,
    )
    run.flush(force=True)
    run.check()
    coords = _project(run, scores, job.config.get("projections", jobs.PROJECTIONS), bundle.trained.config.seed)
    summary = {
        **metrics,
        "parent_id": parent.id,
        "n_skipped": len(skipped),
        "skipped": [{"key": s.ref.sample_id, "reason": s.reason} for s in skipped[:100]],
    }
    _store(
        run,
        scored=scored.refs,
        scored_dataset=dataset.id,
        bank=bundle.bank.refs,
        bank_dataset=bank_dataset.id,
        scores=scores,
        coords=coords,
        skipped=[(s.ref, s.reason) for s in skipped],
        bundle=None,
        summary=summary,
    )


def _project(run: JobRun, scores: ScoreResult, methods: Sequence[str], seed: int) -> dict[str, np.ndarray]:
    """Fit each projection on both contexts' features together (the paper's Figure 1)."""
    coords = {}
    for i, method in enumerate(methods):
        run.set_phase("projecting", i / len(methods), f"fitting {method.upper()} on {2 * len(scores.s_nnd)} points")
        run.flush(force=True)
        started = time.perf_counter()
        coords[method] = project(scores.features, scores.context_features, method, seed=seed)  # (M, 4)
        log.info(
            "job %d: %s of %d samples took %.1f s",
            run.claim.job_id,
            method,
            len(scores.s_nnd),
            time.perf_counter() - started,
        )
        run.check()
    return coords


def _store(
    run: JobRun,
    *,
    scored: list[SampleRef],
    scored_dataset: int,
    bank: list[SampleRef],
    bank_dataset: int,
    scores: ScoreResult,
    coords: dict[str, np.ndarray],
    skipped: list[tuple[SampleRef, str]],
    bundle: bytes | None,
    summary: dict[str, Any],
) -> None:
    """Write a job's results in short transactions, clearing a previous attempt's partial rows first;
    the job turns succeeded in the last one, so readers never see a half-written run as finished."""
    job_id, m = run.claim.job_id, len(scored)
    run.set_phase("writing", 0.0, f"writing results of {m} samples")
    with run.held() as session:
        results.clear_results(session=session, job_id=job_id)
        if scored_dataset == bank_dataset:  # a train job: one read of the dataset's keys for both
            scored_ids, bank_ids = _sample_ids(session, scored_dataset, scored, bank)
        else:
            (scored_ids,) = _sample_ids(session, scored_dataset, scored)
            (bank_ids,) = _sample_ids(session, bank_dataset, bank)
        if skipped:
            flagged = [_sample_row(ref) | {"readable": False, "reason": reason} for ref, reason in skipped]
            datasets.ensure_samples(session=session, dataset_id=scored_dataset, samples=flagged)
    run.check()
    with run.held() as session:
        results.write_scores(
            session=session,
            job_id=job_id,
            role="scored",
            sample_ids=scored_ids,
            s_nnd=scores.s_nnd,
            s_lh=scores.s_lh,
            neighbours=bank_ids[scores.neighbours],  # bank rows → sample ids
            neighbour_similarity=scores.neighbour_similarity,
        )
        if scores.reference_rows is not None and scores.train_s_nnd is not None and scores.train_s_lh is not None:
            results.write_scores(
                session=session,
                job_id=job_id,
                role="reference",
                sample_ids=bank_ids[scores.reference_rows],  # all training images, or a seeded subset
                s_nnd=scores.train_s_nnd,
                s_lh=scores.train_s_lh,
            )
    for start in range(0, m, WRITE_CHUNK):
        run.check()
        stop = min(start + WRITE_CHUNK, m)
        run.set_phase("writing", 0.1 + 0.8 * stop / max(m, 1))
        with run.held() as session:
            results.write_embeddings(
                session=session,
                job_id=job_id,
                sample_ids=scored_ids[start:stop],
                features=scores.features[start:stop],
                context_features=scores.context_features[start:stop],
            )
    for method, xy in coords.items():
        with run.held() as session:
            results.write_projection(session=session, job_id=job_id, method=method, sample_ids=scored_ids, coords=xy)
    run.check()
    run.set_phase("writing", 1.0)
    with run.held() as session:
        if bundle is not None:
            artifacts.save_artifact(session=session, job_id=job_id, name="bundle", data=bundle)
            artifacts.delete_artifact(session=session, job_id=job_id, name="checkpoint")  # the bundle supersedes it
        results.refresh_statistics(session=session)
        message = _done_message(summary, m)
        jobs.finish(session=session, claim=run.claim, summary=_json_safe(summary), message=message)


def _sample_row(ref: SampleRef) -> dict[str, Any]:
    return {"key": ref.sample_id, "location": ref.location, "label": ref.label, "split": ref.split}


def _sample_ids(session: Session, dataset_id: int, *ref_lists: list[SampleRef]) -> list[np.ndarray]:
    """(len(refs),) int64 sample ids for each list of refs of one dataset, adding samples a
    registration has not listed (a run on an unregistered dataset registers what it used)."""
    rows: dict[str, dict[str, Any]] = {}
    for refs in ref_lists:
        for ref in refs:
            rows.setdefault(ref.sample_id, _sample_row(ref))
    ids = datasets.ensure_samples(session=session, dataset_id=dataset_id, samples=list(rows.values()))
    return [np.array([ids[r.sample_id] for r in refs], dtype=np.int64) for refs in ref_lists]


def _done_message(summary: dict[str, Any], m: int) -> str:
    parts = [f"scored {m} images"]
    if summary.get("n_training_images"):
        parts.append(f"{summary['n_training_images']} of them training images, scored leave-one-out")
    if summary.get("auroc_nnd") is not None:
        parts.append(f"AUROC {summary['auroc_nnd']:.3f} (S_NND)")
    if summary.get("auroc_pixels") is not None:
        parts.append(f"raw pixels {summary['auroc_pixels']:.3f}")
    return ", ".join(parts)


def _json_safe(value: Any) -> Any:
    """Metrics as plain JSON: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------- processes


def start_local_worker(url: str | None = None) -> subprocess.Popen | None:
    """Start `con2 worker` for this machine in the background, unless one already serves `url`.

    Only one local worker runs per database URL: it holds a lock file in the data directory for its
    lifetime. Its log is appended to worker.log there. Returns the process, or None when one runs.
    """
    lock = _lock_path(url)
    if _locked(lock):
        return None
    command = [sys.executable, "-m", "engine", "worker"] + (["--db", str(url)] if url else [])
    with open(data_dir() / "worker.log", "ab") as log_file:
        return subprocess.Popen(
            command, stdout=log_file, stderr=log_file, stdin=subprocess.DEVNULL, env={**os.environ, LOCK_ENV: str(lock)}
        )


def _lock_path(url: str | None) -> str:
    digest = hashlib.sha256(parse_url(url).render_as_string(hide_password=False).encode()).hexdigest()[:12]
    return str(data_dir() / f"worker-{digest}.lock")


def _locked(path: str) -> bool:
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _take_local_lock() -> io.TextIOWrapper | Literal[False] | None:
    """With LOCK_ENV set: hold that lock for the process's lifetime (False: another worker has it)."""
    path = os.environ.get(LOCK_ENV)
    if not path:
        return None
    handle = open(path, "a+")  # held open (and locked) until the worker exits
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _handle_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT: finish by putting the running job back in the queue. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(number: int, _frame: Any) -> None:
        if stop.is_set():  # asked twice: stop now; the job is recovered once its heartbeat goes stale
            raise KeyboardInterrupt
        log.info(
            "received %s: requeueing the running job and stopping (again to quit at once)", signal.Signals(number).name
        )
        stop.set()

    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore


def _setup_logging() -> None:
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
