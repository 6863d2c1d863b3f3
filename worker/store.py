"""A finished train or score job's results, written in short transactions: scores, embeddings, projections,
the model bundle, and last the job's own end, so a reader never sees a half-written run as finished."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from db import artifacts, datasets, jobs, results
from engine.data import SampleRef
from engine.tta import ScoreResult
from worker.live import JobRun

WRITE_CHUNK = 20_000  # samples per results transaction: keeps SQLite's write lock short


def store_results(
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
            flagged = [sample_row(ref) | {"readable": False, "reason": reason} for ref, reason in skipped]
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


def sample_row(ref: SampleRef) -> dict[str, Any]:
    return {"key": ref.sample_id, "location": ref.location, "label": ref.label, "split": ref.split}


def _sample_ids(session: Session, dataset_id: int, *ref_lists: list[SampleRef]) -> list[np.ndarray]:
    """(len(refs),) int64 sample ids for each list of refs of one dataset, adding samples a
    registration has not listed (a run on an unregistered dataset registers what it used)."""
    rows: dict[str, dict[str, Any]] = {}
    for refs in ref_lists:
        for ref in refs:
            rows.setdefault(ref.sample_id, sample_row(ref))
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
