"""The engine's checkpoint store (`engine.checkpoint.CheckpointStore`) kept in the database, so that any
worker, on any machine, can resume a job another worker left (stopped, killed, or taken over)."""

from __future__ import annotations

from typing import Any

from db import artifacts, jobs
from engine.checkpoint import from_bytes, to_bytes
from worker.live import JobRun


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
