"""One claimed job's live state: progress and metrics (throttled), heartbeat, cancel, and how it ends.

Every write goes through `JobRun.held`, a transaction that first proves the job is still this worker's
(`db.jobs.Claim`): a worker presumed dead can never write over its successor.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError as SQLAlchemyDBAPIError
from sqlalchemy.orm import Session, sessionmaker

from db import jobs, results
from db.jobs import Claim, JobError, LostClaim
from db.models import Job
from db.roots import OutsideRoots
from db.session import DatabaseError
from engine.config import ConfigError, TrainConfig
from engine.data import DataError
from engine.device import describe, resolve_device, runs_in_bfloat16
from engine.run import Phase
from engine.scoring import NonFiniteFeatures
from engine.train import CheckpointMismatch, NonFiniteLoss, StepReport

HEARTBEAT_S = 2.0  # how often a running job's row is touched from a background thread
PROGRESS_EVERY_S = 1.0  # at most one progress write (and cancel check) per second
# the training settings an `auto` can stand for, as a run's summary names them (engine/run.py `_run_facts`)
SETTLED = ("context", "encoder", "rotation_weight", "batch_size", "precision")
STEP_METRICS_EVERY_S = 0.5  # at most two step rows per second; every epoch end is kept too
FAIL_RETRY_FIRST_S, FAIL_RETRY_MAX_S = 0.5, 5.0  # backoff while the database refuses to record a failure

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


class JobRun:
    """The live side of one claimed job: progress and metrics (throttled), cancel, heartbeat, guards."""

    def __init__(self, sessions: sessionmaker[Session], claim: Claim, job: Job, stop: threading.Event) -> None:
        self.sessions, self.claim, self.job, self.stop = sessions, claim, job, stop
        self.phases = PHASES[job.kind]
        self.phase, self.fraction, self.eta_s, self.message = next(iter(self.phases)), 0.0, None, None
        self.cancel, self.lost, self.done = threading.Event(), threading.Event(), threading.Event()
        self.device: str | None = None
        self._settled: dict[str, Any] | None = None  # a training run's settings, until a report has written them
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
        settled, self._settled = self._settled, None
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
                    summary=settled,
                )
                if wanted:
                    self.cancel.set()
                if pending:
                    job_id, attempt = self.claim.job_id, self.claim.attempt
                    results.write_metrics(session=session, job_id=job_id, attempt=attempt, rows=pending)
                yield session
        except BaseException:
            self._metrics = pending + self._metrics
            self._settled = self._settled or settled
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

    def settle(self, train: TrainConfig, n_train: int | None = None) -> None:
        """engine.run's `on_settled`: the training settings every `auto` became, and the number of training images,
        go into the job's summary with the next progress report (once, not with every report), so the live view
        shows them before the run finishes (the batch, capped at the images, sets the content loss's chance level).
        """
        self._settled = {name: getattr(train, name) for name in SETTLED}
        # the device as the Runs table shows it, with the precision `auto` became on this machine
        device = resolve_device(train.device)
        self.device = describe(device, runs_in_bfloat16(device, train))
        if n_train is not None:
            self._settled["n_train"] = n_train
        self.flush(force=True)

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
