"""The schema, as typed SQLAlchemy 2.0 models: datasets and samples, jobs, and what jobs produce.

    Dataset ─< Sample ─ Thumbnail                     what was registered, with quality flags
       │         │ ├──< Review                          verdicts, append-only
       │         │ └─ CurationItem                      on the Review page's curation list
       └──< Job ─┼──< Score, Embedding, Projection     per (job, sample) results
             │   └──< Metric, JobEvent, Artifact ─< ArtifactPart

A job is one unit of work a worker runs: `register` (inventory a dataset's source, thumbnails),
`train` (a Con2 run; config = the engine's RunConfig as JSON), `score` (a batch scored with a
finished train job's model). Arrays are float32 bytes (`np.ndarray.tobytes()`); times are UTC.
Changing a model means a new migration in db/migrations/versions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JOB_KINDS = ("register", "train", "score")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
SCORE_ROLES = ("scored", "reference")  # reference = the training images' leave-one-out scores
METRIC_KINDS = ("step", "epoch")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive; we put the UTC back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware one, e.g. datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


# SQLite has no clock of its own with microseconds, so every connection db.session opens gets this function:
# `SQLITE_NOW()` in a statement reads this process's UTC clock when SQLite runs the statement, which is after it
# holds the write lock, where a timestamp bound from Python was read before waiting for it.
SQLITE_NOW = "con2_utcnow"


def sqlite_now_text() -> str:
    """utcnow() as SQLite stores a UTCDateTime: naive UTC, 'YYYY-MM-DD HH:MM:SS.ffffff'."""
    return utcnow().replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


JSONType = JSON().with_variant(JSONB(), "postgresql")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType, list[Any]: JSONType}


class Dataset(Base):
    """A source of images as a user registered it: a folder, zip, CSV manifest, .npz or 'digits'."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    location: Mapped[str] = mapped_column(Text)  # the source spec the engine opens (a path, or 'digits')
    kind: Mapped[str | None] = mapped_column(String(16))  # folder, zip, csv, npz, digits; None until registered
    label_origin: Mapped[str | None] = mapped_column(Text)  # in words: "folder names", "CSV column 'label'"
    split_origin: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    registered_at: Mapped[datetime | None]  # when a register job last filled the samples
    verdicts: Mapped[list[Any] | None]  # the verdict set its reviewers chose, e.g. ["remove", "keep", "relabel"]


class Sample(Base):
    """One image of a dataset: identity, label/split as read, size, content hash and quality flags."""

    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("dataset_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(Text)  # the engine's stable sample_id: relative path, "train/12", "digits/5"
    position: Mapped[int | None]  # order in the source's listing
    location: Mapped[str | None] = mapped_column(Text)  # human-readable origin: a path, "file.npz:test[3]"
    label: Mapped[str | None] = mapped_column(Text)
    split: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None]  # pixels, from the header
    height: Mapped[int | None]
    mode: Mapped[str | None] = mapped_column(String(16))  # PIL mode as stored: L, RGB, I;16, P...
    num_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    readable: Mapped[bool | None]  # None = not inventoried yet (seen only as a run's sample)
    reason: Mapped[str | None] = mapped_column(Text)  # why not readable
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("samples.id", ondelete="SET NULL"))
    phash: Mapped[str | None] = mapped_column(String(16))  # perceptual hashes, 16 hex digits (engine.near_duplicates)
    dhash: Mapped[str | None] = mapped_column(String(16))
    # the id of the first sample of its near-duplicate group (looks the same, other bytes); None for that first
    # one. No foreign key: migration 0003 says why; each registration rewrites it.
    near_duplicate_of: Mapped[int | None]


class Thumbnail(Base):
    """A small PNG of a sample made at registration, so pages never touch the original files."""

    __tablename__ = "thumbnails"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    size: Mapped[int]  # side in pixels
    png: Mapped[bytes] = mapped_column(LargeBinary)


class CurationItem(Base):
    """A sample the curator sent from the Data page to the Review page's curation list (unreadable, a
    duplicate, a near duplicate, or any other); its verdicts are ordinary reviews."""

    __tablename__ = "curation_items"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    added_by: Mapped[str] = mapped_column(String(200))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """One unit of work for a worker, with its live status; `attempts` counts claims (the fencing token)."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("kind", JOB_KINDS), name="kind"),
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        Index(None, "status", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    name: Mapped[str | None] = mapped_column(String(200))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1 over the whole job
    phase: Mapped[str | None] = mapped_column(String(16))  # loading, training, scoring, projecting, writing...
    eta_s: Mapped[float | None] = mapped_column(Float)  # seconds left in the current phase, when known
    message: Mapped[str | None] = mapped_column(Text)  # latest status line ("epoch 3/10"), or the failure
    error: Mapped[str | None] = mapped_column(Text)  # one-line reason when failed
    traceback: Mapped[str | None] = mapped_column(Text)  # for debugging, never shown as the reason
    summary: Mapped[dict[str, Any] | None]  # the engine's metrics (AUROC, silhouette, timings) and history
    device: Mapped[str | None] = mapped_column(String(32))
    worker_id: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    checkpoint: Mapped[str | None] = mapped_column(Text)  # db://artifacts/<id> of the latest checkpoint
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]  # first claim
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]


class JobEvent(Base):
    """Append-only history of a job: submitted, claimed, requeued, cancel requested, finished."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    worker_id: Mapped[str | None] = mapped_column(String(200))
    attempt: Mapped[int | None]
    detail: Mapped[str | None] = mapped_column(Text)


class Metric(Base):
    """Training curves: a throttled sample of steps, and every epoch's means."""

    __tablename__ = "metrics"
    __table_args__ = (
        UniqueConstraint("job_id", "kind", "step"),
        CheckConstraint(_in("kind", METRIC_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int]  # which claim of the job wrote it
    kind: Mapped[str] = mapped_column(String(8))  # step or epoch
    step: Mapped[int]  # optimisation steps done (1-based); for epochs, the epoch's last step
    epoch: Mapped[int]  # 1-based
    loss: Mapped[float] = mapped_column(Float)
    loss_context: Mapped[float | None] = mapped_column(Float)
    loss_content: Mapped[float | None] = mapped_column(Float)
    alpha: Mapped[float] = mapped_column(Float)
    lr: Mapped[float] = mapped_column(Float)
    images_per_s: Mapped[float] = mapped_column(Float)
    elapsed_s: Mapped[float] = mapped_column(Float)


class Score(Base):
    """A sample's anomaly scores in one job; higher = more anomalous; rank 1 = most anomalous of its role."""

    __tablename__ = "scores"
    __table_args__ = (CheckConstraint(_in("role", SCORE_ROLES), name="role"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    s_nnd: Mapped[float] = mapped_column(Float)
    s_lh: Mapped[float] = mapped_column(Float)
    rank_nnd: Mapped[int]
    rank_lh: Mapped[int]
    neighbours: Mapped[list[Any] | None]  # [[sample id, cosine similarity], ...] nearest training images first


class Embedding(Base):
    """Encoder features of a scored sample and of its context image, float32 bytes of length 4·dim."""

    __tablename__ = "embeddings"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    dim: Mapped[int]
    features: Mapped[bytes] = mapped_column(LargeBinary)
    context_features: Mapped[bytes] = mapped_column(LargeBinary)


class Projection(Base):
    """2-D coordinates of a sample (x, y) and of its context image (cx, cy), fitted in one space."""

    __tablename__ = "projections"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    method: Mapped[str] = mapped_column(String(8), primary_key=True)  # umap or pca
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    cx: Mapped[float] = mapped_column(Float)
    cy: Mapped[float] = mapped_column(Float)


class Review(Base):
    """A verdict or a note on a sample. Append-only (a trigger refuses updates): the latest row with a
    verdict is the verdict; the latest row is the note (the UI sends the whole note with every row)."""

    __tablename__ = "reviews"
    __table_args__ = (Index(None, "sample_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))  # the run it was seen in
    verdict: Mapped[str | None] = mapped_column(String(64))  # None: a note alone
    note: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Artifact(Base):
    """Bytes a job keeps for later (its latest checkpoint, its scoring bundle), split into parts."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))  # checkpoint or bundle
    size: Mapped[int] = mapped_column(BigInteger)  # bytes
    epoch: Mapped[int | None]  # a checkpoint's completed epochs
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArtifactPart(Base):
    """One part of an artifact; parts keep every value well under the backends' 1 GB limits."""

    __tablename__ = "artifact_parts"

    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
