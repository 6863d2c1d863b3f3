"""Queueing a job of each kind with its typed config: register a dataset, train a run, score a batch.

Each helper builds its kind's config (`db/job_configs.py`), turns a config the queue refuses into a one-line
`JobError`, and hands it to `db.jobs.submit`, the one transition that creates a queued job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from db.job_configs import PROJECTIONS, JobConfigError, RegisterJobConfig, ScoreJobConfig, TrainJobConfig
from db.jobs import JobError, read_job_config, submit
from db.models import Job


def submit_register(
    *, session: Session, dataset_id: int, thumbnail_size: int = 64, max_pixels: int = 100_000_000
) -> Job:
    """Queue an inventory of the dataset's source: per-sample checks, duplicates, thumbnails (pixels)."""
    try:
        config = RegisterJobConfig(thumbnail_size, max_pixels)
    except JobConfigError as error:
        raise JobError(str(error)) from None
    return submit(session=session, kind="register", dataset_id=dataset_id, config=config, name="register")


def submit_train(
    *,
    session: Session,
    dataset_id: int,
    config: Mapping[str, Any],
    name: str | None = None,
    projections: Sequence[str] = PROJECTIONS,
) -> Job:
    """Queue a training run. `config` is the engine's `RunConfig.to_dict()`; the worker reads the data
    from the dataset's location, whatever `config["data"]["source"]` says. `projections`: which 2-D
    projections to fit after training (umap, pca), stored in the job's config under "projections"."""
    try:
        stored = TrainJobConfig.for_run(config, projections=projections)
    except JobConfigError as error:
        raise JobError(str(error)) from None
    return submit(session=session, kind="train", dataset_id=dataset_id, config=stored, name=name)


def submit_score(
    *,
    session: Session,
    parent_id: int,
    dataset_id: int,
    score: Mapping[str, Any] | None = None,
    split: str | None = None,
    normal_label: str | None = None,
    name: str | None = None,
    projections: Sequence[str] = PROJECTIONS,
) -> Job:
    """Queue scoring of a dataset (a screening batch) with a succeeded train job's model, no retraining.

    `score`: the engine's ScoreConfig as a dict (default: the parent run's); `split`: only score this
    split (None = every image); `normal_label`: label of normal images, to report AUROC when known.
    """
    parent = session.get(Job, parent_id)
    if parent is None or parent.kind != "train":
        raise JobError(f"job {parent_id} is not a training run")
    if parent.status != "succeeded":
        raise JobError(f"run {parent_id} has not succeeded (it is {parent.status}); score with a finished run")
    try:
        run = read_job_config(parent)
        config = ScoreJobConfig(dict(score) if score is not None else run.score, split, normal_label, projections)
    except JobConfigError as error:
        raise JobError(str(error)) from None
    return submit(session=session, kind="score", dataset_id=dataset_id, config=config, parent_id=parent_id, name=name)
