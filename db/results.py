"""What runs produce, written and read in bulk: metrics, scores, embeddings, 2-D projections.

Writes are chunked multi-row INSERTs (100k samples take seconds); reads return numpy columns that a
page turns into a DataFrame with `pd.DataFrame(columns)`. Per-sample rows are keyed by (job, sample)
(and role or method), so a job written twice, e.g. after its worker died mid-write and the job was
recovered, can never hold duplicates: the worker clears a job's results before writing them again.
Scores: higher = more anomalous; rank 1 = most anomalous within its role (ranks and percentiles: `db.ranking`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Select, delete, func, select, text
from sqlalchemy.orm import Session

from db.models import SCORE_ROLES, Embedding, Metric, Projection, Sample, Score
from db.ranking import percentile, ranks
from db.session import dialect_insert

CHUNK = 10_000  # rows per INSERT batch
METRIC_FIELDS = ("loss", "loss_context", "loss_content", "alpha", "lr", "images_per_s", "elapsed_s")
# the dtypes of the columns the readers return, in their selects' order (`_columns`)
_SCORE_COLUMNS = {"s_nnd": np.float64, "s_lh": np.float64, "rank_nnd": np.int64, "rank_lh": np.int64}
_COORD_COLUMNS = dict.fromkeys(("x", "y", "cx", "cy"), np.float64)  # NaN where a sample has no projection


@dataclass(frozen=True)
class Embeddings:
    """Encoder features of one job's scored samples, aligned by row."""

    sample_id: np.ndarray  # (M,) int64
    features: np.ndarray  # (M, D) float32, plain image x
    context_features: np.ndarray  # (M, D) float32, its context image t_c(x)


def _chunks(rows: Sequence[Any]) -> list[Sequence[Any]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


def _insert(session: Session, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Execute an INSERT (or upsert) for `rows`, CHUNK rows a statement."""
    for chunk in _chunks(rows):
        session.execute(statement, list(chunk))


def _ids(sample_ids: Sequence[int] | np.ndarray) -> list[int]:
    return np.asarray(sample_ids, dtype=np.int64).tolist()


def _columns(session: Session, query: Select[Any], dtypes: dict[str, Any]) -> dict[str, Any]:
    """The query's rows as one value a column, named by `dtypes` in the select's order: a numpy array of that
    dtype (a None float is NaN), or a plain list where the dtype is `list`."""
    rows = session.execute(query).all()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(dtypes)
    return {
        name: list(values) if dtype is list else np.array(values, dtype=dtype)
        for (name, dtype), values in zip(dtypes.items(), columns, strict=True)
    }


def refresh_statistics(*, session: Session) -> None:
    """After a bulk write: let PostgreSQL re-plan from fresh table statistics.

    Autovacuum analyses new rows only after a while; until then the planner may take a 100k-row
    table for an empty one and join by nested loops (measured: 400 s instead of 1.4 s for
    `read_run_table`). SQLite needs nothing.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE samples, scores, projections"))


# ---------------------------------------------------------------------------------------------- metrics


def write_metrics(*, session: Session, job_id: int, attempt: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Store training metrics; each row has kind (step/epoch), step, epoch and METRIC_FIELDS.

    A (kind, step) written again, by a job resumed from an earlier checkpoint, replaces the old row.
    """
    if not rows:
        return
    records = [
        {"job_id": job_id, "attempt": attempt, "kind": r["kind"], "step": int(r["step"]), "epoch": int(r["epoch"])}
        | {name: (None if r.get(name) is None else float(r[name])) for name in METRIC_FIELDS}
        for r in rows
    ]
    statement = dialect_insert(session)(Metric.__table__)
    statement = statement.on_conflict_do_update(
        index_elements=["job_id", "kind", "step"],
        set_={name: statement.excluded[name] for name in ("attempt", "epoch", *METRIC_FIELDS)},
    )
    _insert(session, statement, records)


def delete_metrics_after(*, session: Session, job_id: int, epoch: int) -> int:
    """Drop metrics of epochs after `epoch`: a job resuming from that checkpoint trains them again."""
    result = session.execute(delete(Metric).where(Metric.job_id == job_id, Metric.epoch > epoch))
    return int(result.rowcount or 0)


def read_metrics(*, session: Session, job_id: int, kind: str = "epoch") -> dict[str, np.ndarray]:
    """Training curves in step order: step, epoch, attempt (int64) and METRIC_FIELDS (float64, NaN = none)."""
    return _columns(
        session,
        select(Metric.step, Metric.epoch, Metric.attempt, *(getattr(Metric, n) for n in METRIC_FIELDS))
        .where(Metric.job_id == job_id, Metric.kind == kind)
        .order_by(Metric.step),
        {"step": np.int64, "epoch": np.int64, "attempt": np.int64} | dict.fromkeys(METRIC_FIELDS, np.float64),
    )


# ---------------------------------------------------------------------------------------------- scores


def clear_results(*, session: Session, job_id: int) -> None:
    """Delete a job's scores, embeddings and projections (before writing them again)."""
    for model in (Score, Embedding, Projection):
        session.execute(delete(model).where(model.job_id == job_id))


def write_scores(
    *,
    session: Session,
    job_id: int,
    role: str,
    sample_ids: Sequence[int] | np.ndarray,
    s_nnd: np.ndarray,
    s_lh: np.ndarray,
    neighbours: np.ndarray | None = None,
    neighbour_similarity: np.ndarray | None = None,
) -> None:
    """Store one role's scores ("scored" samples, or the "reference" training images' leave-one-out
    scores) with their ranks. neighbours: (M, k) sample ids of the nearest training images, best
    first, with their cosine similarities (M, k)."""
    if role not in SCORE_ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(SCORE_ROLES)}")
    ids = _ids(sample_ids)
    s_nnd, s_lh = np.asarray(s_nnd, dtype=np.float64), np.asarray(s_lh, dtype=np.float64)
    if not len(ids) == len(s_nnd) == len(s_lh):
        raise ValueError(f"{len(ids)} samples, {len(s_nnd)} S_NND and {len(s_lh)} S_LH scores")
    rank_nnd, rank_lh = ranks(s_nnd), ranks(s_lh)
    near: list[Any] = [None] * len(ids)
    if neighbours is not None and neighbour_similarity is not None:
        id_rows = np.asarray(neighbours, dtype=np.int64).tolist()
        sim_rows = np.round(np.asarray(neighbour_similarity, dtype=np.float64), 6).tolist()
        near = [
            [[n, s] for n, s in zip(row_ids, row_sims, strict=True)]
            for row_ids, row_sims in zip(id_rows, sim_rows, strict=True)
        ]
    rows = [
        {"job_id": job_id, "role": role, "sample_id": i, "s_nnd": a, "s_lh": b, "rank_nnd": ra, "rank_lh": rb,
         "neighbours": n}
        for i, a, b, ra, rb, n in zip(
            ids, s_nnd.tolist(), s_lh.tolist(), rank_nnd.tolist(), rank_lh.tolist(), near, strict=True
        )
    ]  # fmt: skip
    _insert(session, Score.__table__.insert(), rows)


def read_scores(*, session: Session, job_id: int, role: str = "scored") -> dict[str, np.ndarray]:
    """One role's scores, most anomalous (by S_NND) first: sample_id, rank_nnd, rank_lh (int64), s_nnd, s_lh."""
    return _columns(
        session,
        select(Score.sample_id, Score.s_nnd, Score.s_lh, Score.rank_nnd, Score.rank_lh)
        .where(Score.job_id == job_id, Score.role == role)
        .order_by(Score.rank_nnd),
        {"sample_id": np.int64} | _SCORE_COLUMNS,
    )


def read_scored_sample(*, session: Session, job_id: int, sample_id: int) -> dict[str, Any] | None:
    """One scored sample of a job, for its case view: s_nnd, s_lh (float), rank_nnd, rank_lh (int), and `scored`,
    how many samples the job scored (ranks are out of it); None when the job did not score this sample."""
    row = session.execute(
        select(Score.s_nnd, Score.s_lh, Score.rank_nnd, Score.rank_lh).where(
            Score.job_id == job_id, Score.role == "scored", Score.sample_id == sample_id
        )
    ).one_or_none()
    if row is None:
        return None
    scored = session.scalar(select(func.count()).where(Score.job_id == job_id, Score.role == "scored"))
    return {
        "s_nnd": float(row.s_nnd),
        "s_lh": float(row.s_lh),
        "rank_nnd": int(row.rank_nnd),
        "rank_lh": int(row.rank_lh),
        "scored": int(scored or 0),
    }


def read_neighbours(*, session: Session, job_id: int, sample_id: int) -> list[tuple[int, float]]:
    """The nearest training images of one scored sample: (sample id, cosine similarity), best first."""
    near = session.scalar(
        select(Score.neighbours).where(Score.job_id == job_id, Score.role == "scored", Score.sample_id == sample_id)
    )
    return [(int(n), float(s)) for n, s in near or []]


# ---------------------------------------------------------------------------------------------- embeddings


def write_embeddings(
    *,
    session: Session,
    job_id: int,
    sample_ids: Sequence[int] | np.ndarray,
    features: np.ndarray,
    context_features: np.ndarray,
) -> None:
    """Store (M, D) features of the plain images and (M, D) of their context images as float32 bytes."""
    ids = _ids(sample_ids)
    features = np.ascontiguousarray(features, dtype=np.float32)
    context_features = np.ascontiguousarray(context_features, dtype=np.float32)
    if features.shape != context_features.shape or features.ndim != 2 or features.shape[0] != len(ids):
        raise ValueError(
            f"features {features.shape} and context features {context_features.shape} must both be ({len(ids)}, D)"
        )
    dim = features.shape[1]
    for start in range(0, len(ids), CHUNK):
        stop = min(start + CHUNK, len(ids))
        session.execute(
            Embedding.__table__.insert(),
            [
                {
                    "job_id": job_id,
                    "sample_id": ids[i],
                    "dim": dim,
                    "features": features[i].tobytes(),
                    "context_features": context_features[i].tobytes(),
                }
                for i in range(start, stop)
            ],
        )


def read_embeddings(
    *, session: Session, job_id: int, sample_ids: Sequence[int] | np.ndarray | None = None
) -> Embeddings:
    """Features of a job's scored samples (all, in sample id order, or those of `sample_ids` in that order)."""
    query = select(Embedding.sample_id, Embedding.dim, Embedding.features, Embedding.context_features).where(
        Embedding.job_id == job_id
    )
    rows: list[Any] = []
    if sample_ids is None:
        rows = list(session.execute(query.order_by(Embedding.sample_id)))
    else:
        wanted = _ids(sample_ids)
        found = {}
        for chunk in _chunks(wanted):
            found.update({row.sample_id: row for row in session.execute(query.where(Embedding.sample_id.in_(chunk)))})
        missing = [i for i in wanted if i not in found]
        if missing:
            raise KeyError(f"job {job_id} has no embeddings for sample(s) {missing[:5]}")
        rows = [found[i] for i in wanted]
    if not rows:
        empty = np.zeros((0, 0), dtype=np.float32)
        return Embeddings(np.zeros(0, dtype=np.int64), empty, empty.copy())
    dim = rows[0].dim
    features = np.frombuffer(b"".join(r.features for r in rows), dtype=np.float32).reshape(len(rows), dim)
    context = np.frombuffer(b"".join(r.context_features for r in rows), dtype=np.float32).reshape(len(rows), dim)
    return Embeddings(np.array([r.sample_id for r in rows], dtype=np.int64), features, context)


# ---------------------------------------------------------------------------------------------- projections


def write_projection(
    *, session: Session, job_id: int, method: str, sample_ids: Sequence[int] | np.ndarray, coords: np.ndarray
) -> None:
    """Store (M, 4) coordinates from `engine.projection.project`: x, y of the sample, cx, cy of its context image."""
    ids = _ids(sample_ids)
    coords = np.asarray(coords, dtype=np.float64)
    if coords.shape != (len(ids), 4):
        raise ValueError(f"coords must be ({len(ids)}, 4), got {coords.shape}")
    rows = [
        {"job_id": job_id, "method": method, "sample_id": ids[i], "x": x, "y": y, "cx": cx, "cy": cy}
        for i, (x, y, cx, cy) in enumerate(coords.tolist())
    ]
    _insert(session, Projection.__table__.insert(), rows)


def read_projection(*, session: Session, job_id: int, method: str = "umap") -> dict[str, np.ndarray]:
    """A job's 2-D projection by sample id order: sample_id (int64), x, y, cx, cy (float64)."""
    return _columns(
        session,
        select(Projection.sample_id, Projection.x, Projection.y, Projection.cx, Projection.cy)
        .where(Projection.job_id == job_id, Projection.method == method)
        .order_by(Projection.sample_id),
        {"sample_id": np.int64} | _COORD_COLUMNS,
    )


def read_run_table(*, session: Session, job_id: int, method: str = "umap") -> dict[str, Any]:
    """Everything the explorer and the review queue show per scored sample, most anomalous first.

    Columns: sample_id, rank_nnd, rank_lh (int64); key, label, split (lists); s_nnd, s_lh (float64);
    pct_nnd, pct_lh (% of the training images' leave-one-out scores below this one; NaN without a
    reference); x, y, cx, cy of `method` (NaN when the job has no such projection).
    """
    columns = _columns(
        session,
        select(
            Score.sample_id,
            Sample.key,
            Sample.label,
            Sample.split,
            Score.s_nnd,
            Score.s_lh,
            Score.rank_nnd,
            Score.rank_lh,
            Projection.x,
            Projection.y,
            Projection.cx,
            Projection.cy,
        )
        .join(Sample, Sample.id == Score.sample_id)
        .outerjoin(
            Projection,
            (Projection.job_id == Score.job_id)
            & (Projection.sample_id == Score.sample_id)
            & (Projection.method == method),
        )
        .where(Score.job_id == job_id, Score.role == "scored")
        .order_by(Score.rank_nnd),
        {"sample_id": np.int64, "key": list, "label": list, "split": list} | _SCORE_COLUMNS | _COORD_COLUMNS,
    )
    reference = read_scores(session=session, job_id=job_id, role="reference")
    percentiles = {
        "pct_nnd": percentile(columns["s_nnd"], reference["s_nnd"]),
        "pct_lh": percentile(columns["s_lh"], reference["s_lh"]),
    }
    coords = {name: columns.pop(name) for name in _COORD_COLUMNS}
    return columns | percentiles | coords
