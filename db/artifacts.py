"""Bytes a job keeps in the database: its latest training checkpoint and its scoring bundle.

Stored in the database rather than on one machine's disk, so any worker anywhere can resume a run or
score with a finished model. Large artifacts are split into parts (a resnet18 bundle with its
training bank can exceed the 1 GB a single SQLite or PostgreSQL value may hold).
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import Artifact, ArtifactPart, utcnow

PART_BYTES = 32 * 1024 * 1024
SCHEME = "db://artifacts/"


def location(artifact: Artifact) -> str:
    """Where an artifact lives, as the job row names it: db://artifacts/<id>."""
    return f"{SCHEME}{artifact.id}"


def save_artifact(*, session: Session, job_id: int, name: str, data: bytes, epoch: int | None = None) -> Artifact:
    """Store `data` as the job's artifact `name`, replacing an older one of that name (atomically with
    the caller's transaction: a crash mid-write keeps the previous one)."""
    session.execute(delete(Artifact).where(Artifact.job_id == job_id, Artifact.name == name))
    artifact = Artifact(job_id=job_id, name=name, size=len(data), epoch=epoch, created_at=utcnow())
    session.add(artifact)
    session.flush()
    view = memoryview(data)
    parts = [
        {"artifact_id": artifact.id, "seq": seq, "data": bytes(view[start : start + PART_BYTES])}
        for seq, start in enumerate(range(0, max(len(data), 1), PART_BYTES))
    ]
    for part in parts:  # one at a time: a multi-row insert would hold every part in the driver at once
        session.execute(ArtifactPart.__table__.insert(), part)
    return artifact


def artifact_info(*, session: Session, job_id: int, name: str) -> Artifact | None:
    """The artifact's row (size, epoch, time) without its bytes."""
    return session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name))


def load_artifact(*, session: Session, job_id: int, name: str) -> bytes | None:
    """The artifact's bytes, or None when the job has none of that name."""
    artifact = artifact_info(session=session, job_id=job_id, name=name)
    if artifact is None:
        return None
    parts = session.scalars(
        select(ArtifactPart.data).where(ArtifactPart.artifact_id == artifact.id).order_by(ArtifactPart.seq)
    )
    data = b"".join(parts)
    if len(data) != artifact.size:
        raise RuntimeError(f"artifact {location(artifact)} is incomplete: {len(data)} of {artifact.size} bytes")
    return data


def delete_artifact(*, session: Session, job_id: int, name: str) -> None:
    session.execute(delete(Artifact).where(Artifact.job_id == job_id, Artifact.name == name))
