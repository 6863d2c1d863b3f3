"""The job kinds: register (inventory and thumbnails), train (train, score, project) and score (a finished
run's model on another dataset). Each runs one claimed job through the engine and ends it succeeded;
any exception it raises is the job's failure (`worker.loop.run_job` records it)."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from db import artifacts, datasets, job_reads, jobs, results
from db.job_configs import RegisterJobConfig, ScoreJobConfig, TrainJobConfig
from db.jobs import JobError
from db.models import Dataset, Job
from engine.artifacts import Bundle
from engine.config import CLASSICAL_METHODS, RunConfig, ScoreConfig, build
from engine.data import ImageSet, SampleRef
from engine.device import describe, resolve_device, runs_in_bfloat16
from engine.images import UnreadableImage, decode
from engine.inventory import inventory
from engine.projection import project, warm_up_in_background
from engine.run import RunResult, ScoreRunResult, score_run, train_run
from engine.sources import open_source
from engine.tta import ScoreResult
from worker.checkpoints import DatabaseCheckpoints
from worker.live import JobRun
from worker.store import sample_row, store_results

THUMBNAIL_CHUNK = 512
C = TypeVar("C", RegisterJobConfig, TrainJobConfig, ScoreJobConfig)

log = logging.getLogger("con2.worker")


def register_job(run: JobRun, job: Job, dataset: Dataset) -> None:
    """Inventory the source (hashes, sizes, readability, duplicates, near duplicates) and make thumbnails."""
    config = _config(job, RegisterJobConfig)
    size, max_pixels = config.thumbnail_size, config.max_pixels
    source = open_source(dataset.location)
    run.set_phase("inventory", 0.0, f"checking {len(source.refs())} images")
    run.flush(force=True)

    def on_inventory(done: int, total: int) -> None:
        run.set_phase("inventory", done / max(total, 1), f"checked {done}/{total} images")
        run.flush()

    inv = inventory(source, max_pixels=max_pixels, on_progress=on_inventory)
    run.check()  # the inventory itself cannot stop midway; honour a cancel as soon as it returns
    rows = [
        sample_row(info.ref)
        | {
            "position": position,
            "width": info.width,
            "height": info.height,
            "mode": info.mode,
            "num_bytes": info.num_bytes,
            "sha256": info.sha256,
            "readable": info.readable,
            "reason": info.reason,
            "phash": info.phash,
            "dhash": info.dhash,
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
        datasets.mark_near_duplicates(session=session, dataset_id=dataset.id, groups=inv.near_duplicates)
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
        "near_duplicate_groups": len(inv.near_duplicates),
        "near_duplicates": sum(len(group) - 1 for group in inv.near_duplicates),
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


def train_job(run: JobRun, job: Job, dataset: Dataset) -> None:
    """Train (resuming from the job's checkpoint), score, project, write everything."""
    queued = _config(job, TrainJobConfig)
    # the dataset's location now, not when it was queued: a dataset relocated since still finds its images
    config = RunConfig.from_dict(queued.at(dataset.location).run())
    run.device = str(resolve_device(config.train.device))  # with its precision once the run settles (JobRun.settle)
    if "umap" in queued.projections:  # compile UMAP while the run trains: the first fit spends most of it compiling
        warm_up_in_background()
    with run.held() as session:
        saved = artifacts.artifact_info(session=session, job_id=job.id, name="checkpoint")
        resumed = (saved.epoch or 0) if saved is not None else 0
        results.delete_metrics_after(session=session, job_id=job.id, epoch=resumed)  # those epochs train again
    if resumed:
        log.info("job %d resumes after epoch %d", job.id, resumed)
    # `settle`: what every `auto` became reaches the live view once the images are loaded, not when the run ends
    result = train_run(config, on_progress=run.on_progress, checkpoints=DatabaseCheckpoints(run), on_settled=run.settle)
    run.flush(force=True)
    run.check()
    coords = _project(run, result.scores, queued.projections, config.train.seed)
    # a classical reference (engine.classical) trained no model: nothing to keep for scoring other datasets
    bundle = None if result.trained is None else Bundle(result.trained, result.bank, config.data).to_bytes()
    history = [] if result.trained is None else result.trained.history
    summary = {"history": history, "resumed_from_epoch": resumed}
    _store(run, result, dataset, bank=result.bank, bank_dataset=dataset, coords=coords, bundle=bundle, summary=summary)


def score_job(run: JobRun, job: Job, dataset: Dataset) -> None:
    """Score a dataset with a finished run's model and training bank, without retraining."""
    queued = _config(job, ScoreJobConfig)
    if "umap" in queued.projections:  # compile UMAP while the bundle loads and the batch is scored
        warm_up_in_background()
    with run.sessions() as session:  # reads only: no write lock while a large bundle loads
        parent = job_reads.get_job(session=session, job_id=job.parent_id) if job.parent_id else None
        if parent is None or parent.kind != "train" or parent.status != "succeeded":
            raise JobError(f"score job {job.id} needs a succeeded training run as its parent")
        bank_dataset = datasets.get_dataset(session=session, dataset_id=parent.dataset_id)
        blob = artifacts.load_artifact(session=session, job_id=parent.id, name="bundle")
    if blob is None:
        method = (parent.config.get("train") or {}).get("method")
        why = f" ({method} is a classical reference: it trains no model)" if method in CLASSICAL_METHODS else ""
        raise JobError(f"run {parent.id} has no stored model to score with{why}")
    bundle = Bundle.from_bytes(blob, device="auto")
    run.device = describe(bundle.trained.device, runs_in_bfloat16(bundle.trained.device, bundle.trained.config))
    score = build(ScoreConfig, queued.score)
    data = dataclasses.replace(
        bundle.data, source=dataset.location, score_split=queued.split, normal_label=queued.normal_label
    )

    def on_overlap(count: int, total: int) -> None:
        if count:  # said before scoring starts, in the job's live message, and counted in its summary
            run.message = f"{count} of the {total} images are this model's training images: scored leave-one-out"
            log.info("job %d: %s", job.id, run.message)
            run.flush(force=True)

    result = score_run(
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
    coords = _project(run, result.scores, queued.projections, bundle.trained.config.seed)
    summary = {"parent_id": parent.id}
    _store(
        run, result, dataset, bank=bundle.bank, bank_dataset=bank_dataset, coords=coords, bundle=None, summary=summary
    )


def _store(
    run: JobRun,
    result: RunResult | ScoreRunResult,
    dataset: Dataset,
    *,
    bank: ImageSet,
    bank_dataset: Dataset,
    coords: dict[str, np.ndarray],
    bundle: bytes | None,
    summary: dict[str, Any],
) -> None:
    """Store a train or score run's results; the summary gets the run's metrics first and its skipped images
    last (the first 100 named)."""
    store_results(
        run,
        scored=result.scored.refs,
        scored_dataset=dataset.id,
        bank=bank.refs,
        bank_dataset=bank_dataset.id,
        scores=result.scores,
        coords=coords,
        skipped=[(s.ref, s.reason) for s in result.skipped],
        bundle=bundle,
        summary={
            **result.metrics,
            **summary,
            "n_skipped": len(result.skipped),
            "skipped": [{"key": s.ref.sample_id, "reason": s.reason} for s in result.skipped[:100]],
        },
    )


def _config(job: Job, kind: type[C]) -> C:
    """The job's config as its kind's dataclass (db.job_configs), read in one place."""
    config = jobs.read_job_config(job)
    if not isinstance(config, kind):  # KINDS maps each kind to the function that expects its config
        raise JobError(f"job {job.id} is a {job.kind} job, not the {kind.__name__} this kind runs")
    return config


def _project(run: JobRun, scores: ScoreResult, methods: Sequence[str], seed: int) -> dict[str, np.ndarray]:
    """Fit each projection on both contexts' features together (the paper's Figure 1)."""
    coords = {}
    for i, method in enumerate(methods):
        run.set_phase("projecting", i / len(methods), f"fitting {method.upper()} on {2 * len(scores.s_nnd)} points")
        run.flush(force=True)
        started = time.perf_counter()

        def on_progress(fraction: float, stage: str, i: int = i, method: str = method) -> None:
            # UMAP's layout reports every epoch tqdm draws: the bar moves, and a cancel stops the fit between epochs
            run.set_phase("projecting", (i + fraction) / len(methods), f"{method.upper()}: {stage}")
            run.flush()
            run.check()

        coords[method] = project(scores.features, scores.context_features, method, seed=seed, on_progress=on_progress)
        log.info(
            "job %d: %s of %d samples took %.1f s",
            run.claim.job_id,
            method,
            len(scores.s_nnd),
            time.perf_counter() - started,
        )
        run.check()
    return coords


# What `run_job` calls for each `Job.kind` (db.models.JOB_KINDS).
KINDS: dict[str, Callable[[JobRun, Job, Dataset], None]] = {
    "register": register_job,
    "train": train_job,
    "score": score_job,
}
