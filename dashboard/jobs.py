"""Jobs for the pages: the Train form's suggested config, queueing a training run or a scoring job, the
queue, cancelling, a job's live status and its recorded training steps.

The worker does the work; these functions only queue it and read how it goes. `job_stamp` changes when
a job's status, finish time or (while it runs) progress does: the cache key of every read of its results.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import connection
from dashboard.datasets import dataset_facts
from dashboard.formatting import duration, method_label, number, queue_place
from dashboard.outcome import Outcome
from dashboard.presets import preset_config
from db import datasets as db_datasets
from db import job_reads as db_job_reads
from db import job_submit as db_job_submit
from db import jobs as db_jobs
from db import results as db_results
from engine.config import AUTO_BATCH, RunConfig


def suggested_config(
    dataset_id: int, preset: str, normal_label: str | None, *, facts: dict[str, Any] | None = None
) -> RunConfig:
    """A preset adapted to the dataset: its splits, its image size, and curation when no label is normal.

    `facts`: the dataset's `dataset_facts`, when the caller has them already.
    """
    facts = facts if facts is not None else dataset_facts(dataset_id)
    config = preset_config(preset, max_side=facts["max_side"], normal_label=normal_label)
    raw = config.to_dict()
    raw["data"]["train_split"] = "train" if "train" in facts["splits"] else None
    raw["data"]["score_split"] = "test" if "test" in facts["splits"] else None
    if normal_label is None:  # curation: every image trains and is scored leave-one-out
        raw["data"]["train_split"] = raw["data"]["score_split"] = None
        raw["data"]["holdout_fraction"] = 0.0
    with connection.session() as session:
        dataset = db_datasets.get_dataset(session=session, dataset_id=dataset_id)
        raw["data"]["source"] = dataset.location if dataset else connection.DEMO_LOCATION
    return RunConfig.from_dict(raw)


def submit_training(dataset_id: int, config: RunConfig, name: str | None = None) -> Outcome:
    """Queue a training run; the worker picks it up within a second or two."""
    with connection.session() as session:
        dataset = db_datasets.get_dataset(session=session, dataset_id=dataset_id)
        if dataset is None:
            return Outcome(error=f"Dataset {dataset_id} no longer exists.")
        normal = config.data.normal_label if config.data.normal_label is not None else "all"
        name = name or f"{dataset.name} · {method_label(config.train.method, config.train.context)} · normal {normal}"
        try:
            job = db_job_submit.submit_train(session=session, dataset_id=dataset_id, config=config.to_dict(), name=name)
        except db_jobs.JobError as error:
            return Outcome(error=str(error))
        return Outcome(f"Queued run #{job.id}: {name}. Progress appears below.", job_id=job.id, dataset_id=dataset_id)


def submit_scoring(run_id: int, dataset_id: int, *, split: str | None, normal_label: str | None) -> Outcome:
    """Queue scoring of a dataset with a finished run's model (no retraining)."""
    with connection.session() as session:
        dataset = db_datasets.get_dataset(session=session, dataset_id=dataset_id)
        if dataset is None:
            return Outcome(error=f"Dataset {dataset_id} no longer exists.")
        try:
            job = db_job_submit.submit_score(
                session=session,
                parent_id=run_id,
                dataset_id=dataset_id,
                split=split,
                normal_label=normal_label,
                name=f"{dataset.name} scored with run #{run_id}",
            )
        except db_jobs.JobError as error:
            return Outcome(error=str(error))
        outcome = Outcome(f"Queued scoring job #{job.id}; follow it on the Train page.", job_id=job.id)
        parent = db_job_reads.get_job(session=session, job_id=run_id)
        shared = db_datasets.shared_content(session=session, dataset_id=dataset_id, other_dataset_id=parent.dataset_id)
        if shared:  # said before scoring; the job counts the exact number (same pixels) in its result
            outcome.warnings.append(
                f"{shared} images of this batch are byte-identical to images of the dataset run #{run_id} trained "
                "on. Those that trained are scored leave-one-out, and the job's result counts them."
            )
        return outcome


def jobs_active() -> bool:
    """Whether anything is queued or running (the live views poll only then)."""
    with connection.session() as session:
        return bool(db_job_reads.count_active(session=session))


def state_text(status: str, message: str | None, place: db_job_reads.Waiting | None) -> str:
    """What a job is doing, in words: a queued job's place in the queue (never its last worker's message),
    a running job's progress message, a finished job's status."""
    if status == "queued":
        return queue_place(place.lane, place.ahead, place.registration) if place else "queued"
    if status == "running":
        return f"running: {message}" if message else "running"
    return status


def queue() -> pd.DataFrame:
    """Queued and running jobs, oldest first: id, kind, name, status, progress, message, state (what it is doing,
    in words), cancel_requested."""
    with connection.session() as session:
        found = db_job_reads.list_jobs(session=session, status=("queued", "running"))
        places = db_job_reads.waiting(session=session)
        rows = [
            {
                "id": j.id,
                "kind": j.kind,
                "name": j.name or "",
                "status": j.status,
                "progress": float(j.progress or 0.0),
                "message": j.message,
                "state": state_text(j.status, j.message, places.get(j.id)),
                "cancel_requested": bool(j.cancel_requested),
            }
            for j in reversed(found)
        ]
    columns = ["id", "kind", "name", "status", "progress", "message", "state", "cancel_requested"]
    return pd.DataFrame(rows, columns=columns)


def cancel(job_id: int) -> str:
    """Ask a job to stop; returns what happened, in words."""
    with connection.session() as session:
        try:
            status = db_jobs.request_cancel(session=session, job_id=job_id)
        except db_jobs.JobError as error:
            return str(error)
    if status == "cancelled":
        return f"Job #{job_id} cancelled."
    if status == "running":
        return f"Job #{job_id} stops within seconds."
    return f"Job #{job_id} already {status}."


def job_status(job_id: int) -> dict[str, Any]:
    """A job's live status for the progress view."""
    with connection.session() as session:
        job = db_job_reads.get_job(session=session, job_id=job_id)
        if job is None:
            return {"status": "gone", "phase": None, "eta": None, "device": None, "progress": 0.0, "message": None,
                    "state": "gone", "error": None, "finished": True, "active": False, "summary_line": "",
                    "train": {}}  # fmt: skip
        summary = job.summary or {}
        train = dict(db_jobs.read_job_config(job).train) if job.kind == "train" else {}
        if train.get("batch_size", AUTO_BATCH) == AUTO_BATCH and summary.get("batch_size"):
            train["batch_size"] = summary["batch_size"]  # what `auto` became, once the run has loaded its images
        if summary.get("n_train"):  # a batch larger than the training set trains as one batch of all of them
            train["n_train"] = summary["n_train"]
        line = job.message or ""
        place = db_job_reads.waiting(session=session).get(job.id) if job.status == "queued" else None
        if summary.get("auroc_nnd") is not None:
            line = f"{line} · AUROC S_LH {number(summary.get('auroc_lh'))}"
        return {
            "status": job.status,
            "phase": job.phase,
            "eta": duration(job.eta_s) if job.eta_s is not None else None,
            "device": job.device,
            "progress": float(job.progress or 0.0),
            "message": job.message,
            "state": state_text(job.status, job.message, place),
            "error": job.error,
            "finished": db_jobs.is_finished(job.status),
            "active": job.status in ("queued", "running"),
            "summary_line": f"Run #{job.id} finished: {line}",
            "train": train,  # the run's TrainConfig fields as queued, an auto batch as chosen, and once loaded the
            # number of training images (the chart's chance level, the α caption)
        }


def job_stamp(job_id: int) -> str:
    """Changes when the job's status or finish time does, and with its progress while it runs."""
    with connection.session() as session:
        status, finished, progress = db_job_reads.job_state(session=session, job_id=job_id) or ("gone", None, 0.0)
    return f"{status}:{finished}:{progress if status in ('queued', 'running') else ''}"


@st.cache_data(max_entries=32, show_spinner=False)
def _metrics(url: str, job_id: int, kind: str, stamp: str) -> pd.DataFrame:
    with connection.sessions(url).begin() as session:
        columns = db_results.read_metrics(session=session, job_id=job_id, kind=kind)
    return pd.DataFrame(columns)


def step_metrics(job_id: int) -> pd.DataFrame:
    """Recorded training steps: step, epoch, loss, loss_context, loss_content, alpha, lr, … (one row per step)."""
    return _metrics(connection.database_url(), job_id, "step", job_stamp(job_id))
