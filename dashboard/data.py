"""The one module through which the dashboard reads and writes the database.

Pages call these functions and get DataFrames, dicts and plain values back; they never see a session,
a model or SQL. Every write is one short transaction (`with sessions.begin()`) through `db/`'s functions.
Reads of finished results are cached (`st.cache_data`) under a key that includes the database URL and a
stamp that changes when the data does (a job's status and finish time, the newest review's id), so a
20k-sample run is read once and each verdict still shows at once.

Environment: CON2_DATABASE_URL (default: the SQLite file in CON2_DATA_DIR), CON2_WORKER=off (do not start
a local worker), CON2_REVIEWER (default reviewer name), CON2_VERDICTS (a default verdict set, comma-separated).
"""

from __future__ import annotations

import csv
import getpass
import io
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from dashboard import gallery, triage
from dashboard.intake import IntakeError, check_location, store_upload, upload_limit_bytes
from dashboard.outbox import ReviewWrite
from dashboard.presets import preset_config
from db import datasets as db_datasets
from db import jobs as db_jobs
from db import results as db_results
from db import reviews as db_reviews
from db.models import Job, Review, Sample
from db.session import DatabaseError, data_dir, default_url, make_engine, make_sessionmaker, open_database, shown
from engine.config import RunConfig
from worker.process import start_local_worker  # light: a lock file and a subprocess, no engine

DATABASE_URL_ENV = "CON2_DATABASE_URL"
WORKER_ENV = "CON2_WORKER"
REVIEWER_ENV = "CON2_REVIEWER"
VERDICTS_ENV = "CON2_VERDICTS"
DEMO_LOCATION = "digits"
DEMO_NAME = "digits (demo)"
WORKER_CHECK_S = 15.0  # how often a rerun checks that the local worker still runs
SELECTION_LIMIT = 60  # thumbnails shown for a box or lasso selection
NO_LABEL, NO_SPLIT = "(no label)", "(no split)"  # the count table's names for samples without either
NORMAL_NAMES = ("normal", "0", "good", "healthy", "no", "negative", "ok")  # likely normal-class labels
EXPORTS = {
    "Reviewed samples": "reviewed",
    "Flagged samples": "flagged",
    "Flagged or reviewed": "either",
    "Every scored sample": "all",
}
RUN_COLUMNS = [
    "id", "kind", "name", "dataset", "status", "method", "context", "encoder", "image_size", "epochs", "tta",
    "normal", "device", "duration_s", "auroc_nnd", "auroc_lh", "auroc_pixels", "silhouette", "n_scored", "created",
]  # fmt: skip
RUN_COLUMN_CONFIG = {
    "id": st.column_config.NumberColumn("run", format="#%d"),
    "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
    "auroc_nnd": st.column_config.NumberColumn("AUROC S_NND", format="%.3f"),
    "auroc_lh": st.column_config.NumberColumn("AUROC S_LH", format="%.3f"),
    "auroc_pixels": st.column_config.NumberColumn(
        "AUROC raw pixels", format="%.3f", help="1-NN on raw pixels, no training: the floor a run has to beat."
    ),
    "silhouette": st.column_config.NumberColumn("silhouette", format="%.3f"),
    "n_scored": st.column_config.NumberColumn("scored"),
    "image_size": st.column_config.NumberColumn("px"),
    "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
}


# ---------------------------------------------------------------------------------------------- plumbing


def database_url() -> str:
    """The database this app uses: CON2_DATABASE_URL, else the SQLite file in the data directory."""
    return os.environ.get(DATABASE_URL_ENV) or default_url()


@st.cache_resource(show_spinner="Opening the database…")
def _sessions(url: str) -> sessionmaker[Session]:
    return open_database(url)  # creates or upgrades the schema


@contextmanager
def _session() -> Iterator[Session]:
    """One short transaction; committed when the block ends without an error."""
    with _sessions(database_url()).begin() as session:
        yield session


@dataclass
class Outcome:
    """What a user's action led to: a message to show, or an error saying what to fix."""

    message: str = ""
    error: str | None = None
    job_id: int | None = None
    dataset_id: int | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class AppStatus:
    """Shown in the sidebar: which database, and whether a local worker serves it."""

    url: str
    worker: str
    error: str | None = None  # the database could not be opened: what to fix

    def describe(self) -> str:
        return f"Database: {shown(self.url)} · worker: {self.worker}"


_worker_lock = threading.Lock()
_worker_checked: dict[str, tuple[float, str]] = {}


def start() -> AppStatus:
    """Open (and upgrade) the database, register the demo on first start, make sure a local worker runs.

    Called by streamlit_app.py on every rerun; the database opens once per process and the worker is
    checked at most every WORKER_CHECK_S seconds (starting one when none holds the lock).
    """
    url = database_url()
    try:
        _first_start(url)
    except DatabaseError as error:  # a bad URL, an unreachable server, a locked file: say so, do not crash
        return AppStatus(url, "not started", error=str(error))
    return AppStatus(url, _ensure_worker(url))


@st.cache_resource(show_spinner=False)
def _first_start(url: str) -> bool:
    """Register the bundled demo (scikit-learn digits) when the database holds no dataset yet."""
    with _sessions(url).begin() as session:
        if db_datasets.list_datasets(session=session):
            return False
        dataset = db_datasets.create_dataset(session=session, location=DEMO_LOCATION, name=DEMO_NAME)
        db_jobs.submit_register(session=session, dataset_id=dataset.id)
    return True


def _ensure_worker(url: str) -> str:
    if os.environ.get(WORKER_ENV, "on").strip().lower() in ("off", "0", "false", "no"):
        return f"not started here ({WORKER_ENV}=off)"
    with _worker_lock:
        checked = _worker_checked.get(url)
        if checked is not None and time.monotonic() - checked[0] < WORKER_CHECK_S:
            return checked[1]
        process = start_local_worker(url)
        state = "running" if process is None else f"started (pid {process.pid})"
        _worker_checked[url] = (time.monotonic(), state)
        return state


def default_reviewer() -> str:
    """CON2_REVIEWER, else the user name of the process."""
    try:
        return os.environ.get(REVIEWER_ENV) or getpass.getuser()
    except Exception:  # no user name in some containers
        return "reviewer"


def default_verdicts() -> str | None:
    return os.environ.get(VERDICTS_ENV) or None


def upload_limit_mb() -> float:
    return upload_limit_bytes() / (1024 * 1024)


@st.cache_resource(show_spinner=False)
def has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


# ---------------------------------------------------------------------------------------------- formatting


def number(value: Any, digits: int = 3) -> str:
    """A metric for display: '0.987', or '–' when missing."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def when(value: Any) -> str:
    """A UTC time for display, to the minute."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return ""
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# ---------------------------------------------------------------------------------------------- datasets


def datasets(*, registered_only: bool = False) -> pd.DataFrame:
    """Every dataset, newest first: id, name, location, kind, samples, title."""
    with _session() as session:
        rows = db_datasets.list_datasets(session=session)
        counts = dict(session.execute(select(Sample.dataset_id, func.count()).group_by(Sample.dataset_id)).all())
        frame = pd.DataFrame(
            [
                {
                    "id": d.id,
                    "name": d.name,
                    "location": d.location,
                    "kind": d.kind,
                    "samples": int(counts.get(d.id, 0)),
                }
                for d in rows
            ],
            columns=["id", "name", "location", "kind", "samples"],
        )
    if registered_only:
        frame = frame[frame["samples"] > 0]
    # Titles never change while a dataset registers: a widget showing one keeps its first label.
    repeated = frame["name"].duplicated(keep=False)
    frame["title"] = [f"{n} (#{i})" if r else n for n, i, r in zip(frame["name"], frame["id"], repeated, strict=True)]
    return frame.reset_index(drop=True)


def _register(spec: str, name: str | None) -> Outcome:
    with _session() as session:
        existing = [d for d in db_datasets.list_datasets(session=session) if d.location == spec]
        if existing:
            dataset = existing[0]
            job = db_jobs.submit_register(session=session, dataset_id=dataset.id)
            return Outcome(
                f"{spec} is already registered as '{dataset.name}'; checking it again (job #{job.id}).",
                job_id=job.id,
                dataset_id=dataset.id,
            )
        dataset = db_datasets.create_dataset(session=session, location=spec, name=name)
        job = db_jobs.submit_register(session=session, dataset_id=dataset.id)
        return Outcome(
            f"Registered '{dataset.name}': the worker is reading it now (job #{job.id}).",
            job_id=job.id,
            dataset_id=dataset.id,
        )


def register_location(location: str, name: str | None = None) -> Outcome:
    """Check a typed path and register it; a clear error for a missing path or an unusable source."""
    try:
        check = check_location(location)
    except IntakeError as error:
        return Outcome(error=str(error))
    outcome = _register(check.spec, name)
    if check.missing_count:
        outcome.warnings.append(
            f"{check.missing_count} of the {check.images} files the manifest names do not exist "
            f"(e.g. {', '.join(check.missing[:3])}); they are listed as unreadable and never train."
        )
    return outcome


def register_upload(files: Sequence[tuple[str, bytes]], name: str | None = None) -> Outcome:
    """Store uploaded images or a zip under the data directory, then register that folder."""
    try:
        folder = store_upload(files, data_dir())
        check = check_location(str(folder))
    except IntakeError as error:
        return Outcome(error=str(error))
    default_name = files[0][0].rsplit(".", 1)[0] if len(files) == 1 else f"upload {folder.name}"
    return _register(check.spec, name or default_name)


def registration(dataset_id: int) -> dict[str, Any] | None:
    """The latest register job of a dataset: status, progress, message, error, active."""
    with _session() as session:
        found = db_jobs.list_jobs(session=session, kind="register", dataset_id=dataset_id, limit=1)
        if not found:
            return None
        job = found[0]
        return {
            "id": job.id,
            "status": job.status,
            "progress": float(job.progress or 0.0),
            "message": job.message,
            "error": job.error,
            "active": job.status in ("queued", "running"),
        }


def registrations_active() -> bool:
    """Whether any dataset is being registered (queued or running)."""
    with _session() as session:
        return bool(
            session.scalar(select(func.count()).where(Job.kind == "register", Job.status.in_(("queued", "running"))))
        )


def _dataset_stamp(dataset_id: int) -> str:
    """Changes whenever a registration or a run adds samples to the dataset."""
    with _session() as session:
        dataset = db_datasets.get_dataset(session=session, dataset_id=dataset_id)
        count, top = session.execute(
            select(func.count(), func.max(Sample.id)).where(Sample.dataset_id == dataset_id)
        ).one()
    return f"{dataset.registered_at if dataset else None}:{count}:{top}"


@st.cache_data(max_entries=16, show_spinner=False)
def _samples(url: str, dataset_id: int, stamp: str) -> pd.DataFrame:
    with _sessions(url).begin() as session:
        columns = db_datasets.read_samples(session=session, dataset_id=dataset_id)
    return pd.DataFrame(columns)


def _sample_frame(dataset_id: int) -> pd.DataFrame:
    return _samples(database_url(), dataset_id, _dataset_stamp(dataset_id))


def _sorted_labels(values: Sequence[Any]) -> list[str]:
    labels = {str(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))}
    return sorted(labels, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))


def dataset_overview(dataset_id: int) -> dict[str, Any]:
    """Counts for the Data page: images, by label and split (a split × label table), unreadable, duplicates."""
    with _session() as session:
        dataset = db_datasets.get_dataset(session=session, dataset_id=dataset_id)
        summary = db_datasets.dataset_summary(session=session, dataset_id=dataset_id)
    samples = _sample_frame(dataset_id)
    table = pd.DataFrame()
    if not samples.empty:
        counts = samples.assign(
            label=samples["label"].fillna(NO_LABEL), split=samples["split"].fillna(NO_SPLIT)
        ).pivot_table(index="split", columns="label", values="id", aggfunc="count", fill_value=0)
        # Real labels in their natural order, then the unlabelled column once: _sorted_labels sees the
        # placeholder as a label too, so it is taken out before it is put back at the end.
        labels = [c for c in _sorted_labels(counts.columns) if c != NO_LABEL]
        counts = counts[labels + ([NO_LABEL] if NO_LABEL in counts.columns else [])]
        # A label may itself be called "total": the sum column must not repeat its name.
        counts["total" if "total" not in counts.columns else "(total)"] = counts.sum(axis=1)
        table = counts
    return {
        "name": dataset.name if dataset else "",
        "location": dataset.location if dataset else "",
        "kind": dataset.kind if dataset else None,
        "label_origin": (dataset.label_origin if dataset else None) or "none",
        "samples": int(summary["samples"]),
        "by_label": summary["by_label"],
        "by_split": summary["by_split"],
        "unreadable": len(summary["unreadable"]),
        "duplicates": int(summary["duplicates"]),
        "labels": _sorted_labels(summary["by_label"]),
        "table": table,
    }


def quality_flags(dataset_id: int) -> pd.DataFrame:
    """One row per flagged sample: what is wrong (unreadable and why, or a duplicate of which file)."""
    samples = _sample_frame(dataset_id)
    if samples.empty:
        return pd.DataFrame(columns=["sample", "problem", "location"])
    keys = dict(zip(samples["id"], samples["key"], strict=True))
    unreadable = samples[~samples["readable"]]
    duplicates = samples[samples["duplicate_of"] >= 0]
    rows = [
        {"sample": r.key, "problem": f"unreadable: {r.reason or 'unknown reason'}", "location": r.location}
        for r in unreadable.itertuples()
    ] + [
        {"sample": r.key, "problem": f"duplicate of {keys.get(r.duplicate_of, r.duplicate_of)}", "location": r.location}
        for r in duplicates.itertuples()
    ]
    return pd.DataFrame(rows, columns=["sample", "problem", "location"])


@st.cache_data(max_entries=512, show_spinner=False)
def _thumbnails(url: str, ids: tuple[int, ...]) -> dict[int, bytes]:
    with _sessions(url).begin() as session:
        return db_datasets.read_thumbnails(session=session, sample_ids=list(ids))


def thumbnails(sample_ids: Sequence[int]) -> dict[int, bytes]:
    """PNG thumbnails by sample id (samples without one are absent)."""
    return _thumbnails(database_url(), tuple(int(i) for i in sample_ids))


def sample_thumbnails(dataset_id: int, *, label: str | None, offset: int, limit: int) -> dict[str, list[Any]]:
    """A page of a dataset's readable samples: their thumbnails and captions (key · label)."""
    samples = _sample_frame(dataset_id)
    if samples.empty:
        return {"pngs": [], "captions": []}
    rows = samples[samples["readable"]]
    if label is not None:
        rows = rows[rows["label"] == label]
    rows = rows.iloc[offset : offset + limit]
    pngs = thumbnails(rows["id"].tolist())
    shown_rows = [r for r in rows.itertuples() if r.id in pngs]
    return {
        "pngs": [pngs[r.id] for r in shown_rows],
        "captions": [f"{r.key} · {r.label}" if r.label is not None else r.key for r in shown_rows],
    }


def context_gallery(dataset_id: int, count: int = 4) -> list[dict[str, Any]]:
    """A few samples (one per label where labels exist) with each context augmentation applied."""
    samples = _sample_frame(dataset_id)
    if samples.empty:
        return []
    readable = samples[samples["readable"] & (samples["duplicate_of"] < 0)]
    picked = readable.groupby(readable["label"].fillna("(none)"), sort=False).head(1)
    if len(picked) < count:
        picked = pd.concat([picked, readable.drop(picked.index).head(count - len(picked))])
    picked = picked.head(count)
    pngs = thumbnails(picked["id"].tolist())
    rows = [r for r in picked.itertuples() if r.id in pngs]
    images = gallery.context_gallery([pngs[r.id] for r in rows])
    return [
        {"caption": f"{r.key}" + (f" ({r.label})" if r.label is not None else ""), "images": row}
        for r, row in zip(rows, images, strict=True)
    ]


def dataset_facts(dataset_id: int) -> dict[str, Any]:
    """What the Train form needs to know about a dataset: labels, splits, a likely normal label, image size."""
    samples = _sample_frame(dataset_id)
    labels = _sorted_labels(samples["label"]) if not samples.empty else []
    splits = sorted({str(s) for s in samples["split"] if s is not None}) if not samples.empty else []
    default = next((name for name in NORMAL_NAMES for label in labels if label.lower() == name), None)
    if default is None and labels:
        default = str(samples["label"].value_counts().idxmax())
    sides = samples.loc[samples["readable"], ["width", "height"]].max(axis=1) if not samples.empty else pd.Series()
    return {
        "labels": labels,
        "splits": splits,
        "default_normal": default,
        "max_side": int(sides.max()) if len(sides) and sides.max() > 0 else None,
    }


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
    with _session() as session:
        dataset = db_datasets.get_dataset(session=session, dataset_id=dataset_id)
        raw["data"]["source"] = dataset.location if dataset else DEMO_LOCATION
    return RunConfig.from_dict(raw)


# ---------------------------------------------------------------------------------------------- jobs


def submit_training(dataset_id: int, config: RunConfig, name: str | None = None) -> Outcome:
    """Queue a training run; the worker picks it up within a second or two."""
    with _session() as session:
        dataset = db_datasets.get_dataset(session=session, dataset_id=dataset_id)
        if dataset is None:
            return Outcome(error=f"Dataset {dataset_id} no longer exists.")
        normal = config.data.normal_label if config.data.normal_label is not None else "all"
        name = name or f"{dataset.name} · {config.train.method}/{config.train.context} · normal {normal}"
        try:
            job = db_jobs.submit_train(session=session, dataset_id=dataset_id, config=config.to_dict(), name=name)
        except db_jobs.JobError as error:
            return Outcome(error=str(error))
        return Outcome(f"Queued run #{job.id}: {name}. Progress appears below.", job_id=job.id, dataset_id=dataset_id)


def submit_scoring(run_id: int, dataset_id: int, *, split: str | None, normal_label: str | None) -> Outcome:
    """Queue scoring of a dataset with a finished run's model (no retraining)."""
    with _session() as session:
        dataset = db_datasets.get_dataset(session=session, dataset_id=dataset_id)
        if dataset is None:
            return Outcome(error=f"Dataset {dataset_id} no longer exists.")
        try:
            job = db_jobs.submit_score(
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
        parent = db_jobs.get_job(session=session, job_id=run_id)
        shared = db_datasets.shared_content(session=session, dataset_id=dataset_id, other_dataset_id=parent.dataset_id)
        if shared:  # said before scoring; the job counts the exact number (same pixels) in its result
            outcome.warnings.append(
                f"{shared} images of this batch are byte-identical to images of the dataset run #{run_id} trained "
                "on. Those that trained are scored leave-one-out, and the job's result counts them."
            )
        return outcome


def jobs_active() -> bool:
    """Whether anything is queued or running (the live views poll only then)."""
    with _session() as session:
        return bool(session.scalar(select(func.count()).where(Job.status.in_(("queued", "running")))))


def queue() -> pd.DataFrame:
    """Queued and running jobs, oldest first: id, kind, name, status, progress, message, cancel_requested."""
    with _session() as session:
        found = db_jobs.list_jobs(session=session, status=("queued", "running"))
        rows = [
            {
                "id": j.id,
                "kind": j.kind,
                "name": j.name or "",
                "status": j.status,
                "progress": float(j.progress or 0.0),
                "message": j.message,
                "cancel_requested": bool(j.cancel_requested),
            }
            for j in reversed(found)
        ]
    return pd.DataFrame(rows, columns=["id", "kind", "name", "status", "progress", "message", "cancel_requested"])


def cancel(job_id: int) -> str:
    """Ask a job to stop; returns what happened, in words."""
    with _session() as session:
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
    with _session() as session:
        job = db_jobs.get_job(session=session, job_id=job_id)
        if job is None:
            return {"status": "gone", "phase": None, "eta": None, "device": None, "progress": 0.0, "message": None,
                    "error": None, "finished": True, "active": False, "summary_line": ""}  # fmt: skip
        summary = job.summary or {}
        line = job.message or ""
        if summary.get("auroc_nnd") is not None:
            line = f"{line} · AUROC S_LH {number(summary.get('auroc_lh'))}"
        return {
            "status": job.status,
            "phase": job.phase,
            "eta": duration(job.eta_s) if job.eta_s is not None else None,
            "device": job.device,
            "progress": float(job.progress or 0.0),
            "message": job.message,
            "error": job.error,
            "finished": db_jobs.is_finished(job.status),
            "active": job.status in ("queued", "running"),
            "summary_line": f"Run #{job.id} finished: {line}",
        }


def _job_stamp(job_id: int) -> str:
    with _session() as session:
        status, finished, progress = session.execute(
            select(Job.status, Job.finished_at, Job.progress).where(Job.id == job_id)
        ).one_or_none() or ("gone", None, 0.0)
    return f"{status}:{finished}:{progress if status in ('queued', 'running') else ''}"


@st.cache_data(max_entries=32, show_spinner=False)
def _metrics(url: str, job_id: int, kind: str, stamp: str) -> pd.DataFrame:
    with _sessions(url).begin() as session:
        columns = db_results.read_metrics(session=session, job_id=job_id, kind=kind)
    return pd.DataFrame(columns)


def step_metrics(job_id: int) -> pd.DataFrame:
    """Recorded training steps: step, epoch, loss, loss_context, loss_content, alpha, lr, … (one row per step)."""
    return _metrics(database_url(), job_id, "step", _job_stamp(job_id))


# ---------------------------------------------------------------------------------------------- runs


def _config_value(job: Job, parents: dict[int, Job], section: str, name: str) -> Any:
    config = job.config or {}
    if job.kind == "score" and job.parent_id in parents:
        config = parents[job.parent_id].config or {}
    return (config.get(section) or {}).get(name)


def runs(
    *,
    kinds: Sequence[str] = ("train", "score"),
    status: str | None = None,
    labelled_only: bool = False,
    dataset_id: int | None = None,
) -> pd.DataFrame:
    """Training runs and scoring jobs, newest first, with settings, timing, device and metrics.

    Columns: RUN_COLUMNS, plus title (for pickers), parent_id and dataset_id.
    """
    with _session() as session:
        found = [j for j in db_jobs.list_jobs(session=session, status=status, dataset_id=dataset_id) if j.kind in kinds]
        parents = {j.id: j for j in db_jobs.list_jobs(session=session, kind="train")}
        names = {d.id: d.name for d in db_datasets.list_datasets(session=session)}
        rows = []
        for job in found:
            summary = job.summary or {}
            config = job.config or {}
            normal = _normal_label(job)
            ended = job.finished_at
            started = job.started_at
            rows.append(
                {
                    "id": job.id,
                    "kind": job.kind,
                    "name": job.name or "",
                    "dataset": names.get(job.dataset_id, ""),
                    "dataset_id": job.dataset_id,
                    "parent_id": job.parent_id,
                    "status": job.status,
                    "method": _config_value(job, parents, "train", "method"),
                    "context": _config_value(job, parents, "train", "context"),
                    "encoder": _config_value(job, parents, "train", "encoder"),
                    "image_size": _config_value(job, parents, "data", "image_size"),
                    "epochs": _config_value(job, parents, "train", "epochs"),
                    "tta": ((config.get("score") or {}).get("tta")),
                    "normal": normal if normal is not None else ("(all)" if job.kind == "train" else ""),
                    "device": job.device,
                    "duration_s": (ended - started).total_seconds() if ended and started else None,
                    "auroc_nnd": summary.get("auroc_nnd"),
                    "auroc_lh": summary.get("auroc_lh"),
                    "auroc_pixels": summary.get("auroc_pixels"),
                    "silhouette": summary.get("silhouette"),
                    "n_scored": summary.get("n_scored"),
                    "created": job.created_at,
                }
            )
    frame = pd.DataFrame(rows, columns=[*RUN_COLUMNS, "dataset_id", "parent_id"])
    if labelled_only:
        frame = frame[frame["auroc_nnd"].notna()]
    frame["title"] = [_title(r) for r in frame.itertuples()]
    return frame.reset_index(drop=True)


def _title(row: Any) -> str:
    """A run's name in pickers; fixed for the run's life (a widget showing it keeps its first label)."""
    what = f"{row.method}/{row.context}" if row.method else row.kind
    if row.kind == "score":
        return f"#{row.id} {row.dataset} · scored with #{int(row.parent_id)} ({what})"
    return f"#{row.id} {row.dataset} · {what} · normal {row.normal}"


def run_caption(job_id: int) -> str:
    frame = runs()
    row = frame[frame["id"] == job_id]
    if row.empty:
        return ""
    r = row.iloc[0]
    auroc = f"AUROC {r['auroc_nnd']:.3f} (S_NND)" if pd.notna(r["auroc_nnd"]) else ""
    parts = [str(r["title"]), auroc, f"device {r['device']}" if r["device"] else ""]
    return " · ".join(p for p in parts if p)


def compare_runs(job_ids: Sequence[int]) -> dict[str, pd.DataFrame]:
    """Metrics and settings of a few runs side by side; settings that differ come first."""
    frame = runs()
    frame = frame[frame["id"].isin(job_ids)].set_index("id").loc[list(job_ids)]
    metrics = frame[["auroc_nnd", "auroc_lh", "auroc_pixels", "silhouette"]].copy()
    metrics.insert(0, "run", [f"#{i}" for i in frame.index])
    with _session() as session:
        configs = {}
        for job_id in job_ids:
            job = db_jobs.get_job(session=session, job_id=job_id)
            parent = db_jobs.get_job(session=session, job_id=job.parent_id) if job and job.parent_id else None
            source = (parent or job).config if job else {}
            flat = {
                f"{section}.{k}": v
                for section in ("data", "train", "score")
                for k, v in (source.get(section) or {}).items()
            }
            flat.update({"duration": duration(frame.loc[job_id, "duration_s"]), "device": frame.loc[job_id, "device"]})
            configs[f"#{job_id}"] = {k: "" if v is None else str(v) for k, v in flat.items()}
    table = pd.DataFrame(configs)
    differs = table.nunique(axis=1) > 1
    table = pd.concat([table[differs], table[~differs]])
    return {"metrics": metrics.reset_index(drop=True), "config": table}


# ---------------------------------------------------------------------------------------------- results


def _normal_label(job: Job) -> str | None:
    config = job.config or {}
    return config.get("normal_label") if job.kind == "score" else (config.get("data") or {}).get("normal_label")


@st.cache_data(max_entries=8, show_spinner="Loading the run…")
def _run_frame(url: str, job_id: int, method: str, stamp: str) -> pd.DataFrame:
    """Everything per scored sample of a finished run, most anomalous (S_NND) first."""
    with _sessions(url).begin() as session:
        columns = db_results.read_run_table(session=session, job_id=job_id, method=method)
        job = db_jobs.get_job(session=session, job_id=job_id)
        locations = dict(
            session.execute(
                select(Sample.id, Sample.location).where(Sample.dataset_id == job.dataset_id)
            ).all()
        ) if job else {}  # fmt: skip
    frame = pd.DataFrame(columns)
    frame["location"] = frame["sample_id"].map(locations)
    return frame


def _run_table(job_id: int, method: str = "umap") -> pd.DataFrame:
    """Scores and ranks do not depend on `method` (only x, y, cx, cy do): pass the method the page
    already shows, so its cached frame is reused rather than a second one read."""
    return _run_frame(database_url(), job_id, method, _job_stamp(job_id))


def _review_stamp() -> int:
    with _session() as session:
        return int(session.scalar(select(func.max(Review.id))) or 0)


def _read_reviews(url: str, sample_ids: Sequence[int]) -> pd.DataFrame:
    with _sessions(url).begin() as session:
        latest = db_reviews.latest_reviews(session=session, sample_ids=list(sample_ids))
        rows = [
            {"sample_id": s, "verdict": r.verdict, "note": r.note, "reviewer": r.reviewer, "reviewed_at": r.reviewed_at}
            for s, r in latest.items()
        ]
    return pd.DataFrame(rows, columns=["sample_id", "verdict", "note", "reviewer", "reviewed_at"])


@st.cache_data(max_entries=16, show_spinner=False)
def _reviews(url: str, sample_ids: tuple[int, ...], stamp: int) -> pd.DataFrame:
    """The latest review of each sample, cached until any new review is written (`stamp`: newest review id)."""
    return _read_reviews(url, sample_ids)


def _with_reviews(frame: pd.DataFrame, *, fresh: bool = False) -> pd.DataFrame:
    ids = tuple(int(i) for i in frame["sample_id"])
    if fresh:
        reviews = _read_reviews(database_url(), ids)
    else:
        reviews = _reviews(database_url(), ids, _review_stamp())
    merged = frame.merge(reviews, on="sample_id", how="left")
    return merged.astype({"verdict": "object", "note": "object", "reviewer": "object"})


def current_reviews(sample_ids: Sequence[int]) -> dict[int, db_reviews.CurrentReview]:
    """Where each reviewed sample's review stands now (verdict, who, when, note); unreviewed ones are absent."""
    with _session() as session:
        return db_reviews.latest_reviews(session=session, sample_ids=list(sample_ids))


def projection_points(job_id: int, method: str) -> pd.DataFrame:
    """The run's 2-D projection with what a point can be coloured by (scores, label, split, verdict)."""
    frame = _run_table(job_id, method)
    frame = frame[frame["x"].notna()]
    frame = _with_reviews(frame[["sample_id", "key", "x", "y", "cx", "cy", "s_nnd", "s_lh", "label", "split"]])
    return frame.reset_index(drop=True)


def selected_sample_ids(event: Any) -> list[int]:
    """Sample ids of the points a box or lasso selected, in selection order, without repeats."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return []
    ids: dict[int, None] = {}
    for point in points:
        custom = point.get("customdata")
        if custom:
            try:
                ids[int(custom[0])] = None
            except (TypeError, ValueError):
                continue
    return list(ids)


def most_anomalous_first(job_id: int, sample_ids: Sequence[int], method: str = "umap") -> list[int]:
    """The given samples of a run in rank order (S_NND, most anomalous first); unknown ids dropped."""
    ranks = _run_table(job_id, method).set_index("sample_id")["rank_nnd"]
    known = [i for i in sample_ids if i in ranks.index]
    return sorted(known, key=lambda i: int(ranks.at[i]))


def run_thumbnails(job_id: int, sample_ids: Sequence[int], method: str = "umap") -> dict[str, list[Any]]:
    """Thumbnails of some of a run's samples with captions (key, S_NND rank) and names for pickers."""
    frame = _run_table(job_id, method).set_index("sample_id")
    pngs = thumbnails(sample_ids)
    kept = [i for i in sample_ids if i in pngs and i in frame.index]
    names = [f"#{frame.at[i, 'rank_nnd']} {frame.at[i, 'key']}" for i in kept]
    return {"ids": kept, "pngs": [pngs[i] for i in kept], "captions": names, "names": names}


def review_table(job_id: int, score: str = "s_nnd") -> pd.DataFrame:
    """The ranked queue by `score` (s_nnd or s_lh), with each sample's percentile and current verdict.

    Columns: sample_id, key, location, label, split, s_nnd, s_lh, rank, pct, verdict, note, reviewer,
    reviewed_at; rank 1 = most anomalous by `score`.
    """
    frame = _run_table(job_id)
    suffix = "nnd" if score == "s_nnd" else "lh"
    frame = frame.assign(rank=frame[f"rank_{suffix}"], pct=frame[f"pct_{suffix}"]).sort_values("rank")
    columns = ["sample_id", "key", "location", "label", "split", "s_nnd", "s_lh", "rank", "pct"]
    return _with_reviews(frame[columns]).reset_index(drop=True)


@st.cache_data(max_entries=16, show_spinner=False)
def _reference(url: str, job_id: int, stamp: str) -> dict[str, np.ndarray]:
    with _sessions(url).begin() as session:
        return db_results.read_scores(session=session, job_id=job_id, role="reference")


def reference_scores(job_id: int, score: str = "s_nnd") -> np.ndarray:
    """The training normals' leave-one-out scores of a run (the percentiles' reference)."""
    return _reference(database_url(), job_id, _job_stamp(job_id))[score]


def sample_case(job_id: int, sample_id: int, method: str = "umap") -> dict[str, Any] | None:
    """One scored sample: image and context image, scores, ranks, percentiles, verdict, nearest training images."""
    frame = _run_table(job_id, method)
    row = frame[frame["sample_id"] == sample_id]
    if row.empty:
        return None
    r = row.iloc[0]
    with _session() as session:
        job = db_jobs.get_job(session=session, job_id=job_id)
        parent = db_jobs.get_job(session=session, job_id=job.parent_id) if job and job.parent_id else None
        context = ((parent or job).config.get("train") or {}).get("context", "invert") if job else "invert"
        near = db_results.read_neighbours(session=session, job_id=job_id, sample_id=sample_id)
        samples = db_datasets.get_samples(session=session, sample_ids=[n for n, _ in near])
        latest = db_reviews.latest_reviews(session=session, sample_ids=[sample_id]).get(sample_id)
        neighbour_keys = {i: (s.key, s.label) for i, s in samples.items()}
        review = (latest.verdict, latest.reviewer, latest.note) if latest else (None, None, None)
    pngs = thumbnails([sample_id, *[n for n, _ in near]])
    png = pngs.get(sample_id)
    return {
        "sample_id": sample_id,
        "key": r["key"],
        "location": r["location"],
        "label": r["label"],
        "split": r["split"],
        "s_nnd": float(r["s_nnd"]),
        "s_lh": float(r["s_lh"]),
        "rank_nnd": int(r["rank_nnd"]),
        "rank_lh": int(r["rank_lh"]),
        "scored": len(frame),
        "pct_nnd_text": triage.percentile_text(r["pct_nnd"]),
        "pct_lh_text": triage.percentile_text(r["pct_lh"]),
        "context": context,
        "image": gallery.display(png) if png else None,
        "context_image": gallery.context_image(png, context) if png else None,
        "verdict": review[0],
        "reviewer": review[1],
        "note": review[2],
        "neighbours": [
            {
                "key": neighbour_keys.get(n, (str(n), None))[0],
                "label": neighbour_keys.get(n, (None, None))[1],
                "similarity": similarity,
                "image": gallery.display(pngs[n]),
            }
            for n, similarity in near
            if n in pngs
        ],
    }


def record_verdict(sample_id: int, job_id: int, verdict: str | None, note: str | None, reviewer: str) -> str:
    """Save a verdict and note at once as a new review row (`verdict=None`: the note alone, the verdict
    stays as it was); returns a confirmation or what went wrong."""
    try:
        with _session() as session:
            db_reviews.add_review(
                session=session, sample_id=sample_id, verdict=verdict, reviewer=reviewer, note=note, job_id=job_id
            )
            key = session.scalar(select(Sample.key).where(Sample.id == sample_id))
    except ValueError as error:
        return f"Not saved: {error}"
    if verdict is None:
        return f"Saved the note for {key}" if (note or "").strip() else f"Cleared the note for {key}"
    return f"Saved: {verdict} for {key}"


WRITE_WAIT_S = 2.0  # a review write waits this long for another process's lock, then is retried later
_writers_lock = threading.Lock()
_writers: dict[str, sessionmaker[Session]] = {}


def _writer(url: str) -> sessionmaker[Session]:
    """Sessions for review writes: a short busy timeout, and no Streamlit call (a widget callback uses them,
    and any `st.*` call there is a point where a newer click can cut the callback off before it writes)."""
    with _writers_lock:
        if url not in _writers:
            _writers[url] = make_sessionmaker(make_engine(url, busy_timeout_s=WRITE_WAIT_S))
        return _writers[url]


def write_review(item: ReviewWrite) -> str:
    """Store one click of the Review page (a verdict with its note, or a note alone) at its click time.

    Returns a confirmation; raises DatabaseError (DatabaseLocked: another process holds the write lock
    longer than WRITE_WAIT_S) for a write to retry, ValueError for one refused for good. Idempotent: the
    same click written twice is one row. Plain Python and SQLAlchemy only, safe inside a widget callback.
    """
    with _writer(database_url()).begin() as session:
        db_reviews.add_review(
            session=session,
            sample_id=item.sample_id,
            verdict=item.verdict,
            reviewer=item.reviewer,
            note=item.note,
            job_id=item.job_id,
            at=item.clicked_at,
        )
        key = session.scalar(select(Sample.key).where(Sample.id == item.sample_id))
    if item.verdict is None:
        return f"Saved the note for {key}" if (item.note or "").strip() else f"Cleared the note for {key}"
    return f"Saved: {item.verdict} for {key}"


def export_csv(
    job_id: int, score: str, flagged_ids: Sequence[int] | np.ndarray, what: str, verdicts: Sequence[str] = ()
) -> bytes:
    """The review list as CSV: rank, scores, percentile, flag, verdict, note, reviewer, time, sample id, location.

    Reads the verdicts fresh at the moment of the export. `what`: a key of EXPORTS; `verdicts`: keep only
    samples whose current verdict is one of these (empty = any), e.g. the curator's list of "remove".
    """
    frame = _run_table(job_id)
    suffix = "nnd" if score == "s_nnd" else "lh"
    frame = frame.assign(rank=frame[f"rank_{suffix}"], percentile=frame[f"pct_{suffix}"]).sort_values("rank")
    frame = _with_reviews(frame, fresh=True)
    flagged = set(int(i) for i in np.asarray(flagged_ids).tolist())
    frame["flagged"] = frame["sample_id"].isin(flagged)
    mode = EXPORTS[what]
    reviewed = frame["verdict"].notna() | frame["note"].notna()  # a note alone counts as reviewed
    if mode == "reviewed":
        frame = frame[reviewed]
    elif mode == "flagged":
        frame = frame[frame["flagged"]]
    elif mode == "either":
        frame = frame[frame["flagged"] | reviewed]
    if verdicts:
        frame = frame[frame["verdict"].isin(list(verdicts))]
    out = pd.DataFrame(
        {
            "run": job_id,
            "rank": frame["rank"],
            "ranked_by": score,
            "sample_id": frame["sample_id"],
            "key": frame["key"],
            "location": frame["location"],
            "label": frame["label"],
            "split": frame["split"],
            "s_nnd": frame["s_nnd"].round(6),
            "s_lh": frame["s_lh"].round(6),
            "percentile_among_training_normals": frame["percentile"].round(2),
            "flagged": frame["flagged"],
            "verdict": frame["verdict"],
            "note": frame["note"],
            "reviewer": frame["reviewer"],
            "reviewed_at": [when(t) if isinstance(t, datetime | pd.Timestamp) else "" for t in frame["reviewed_at"]],
        }
    )
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
    return buffer.getvalue().encode("utf-8")


def evaluation(job_id: int) -> dict[str, Any]:
    """AUROC of both scores, silhouette, and the labelled scores (anomalous = not the normal label)."""
    with _session() as session:
        job = db_jobs.get_job(session=session, job_id=job_id)
        summary = (job.summary or {}) if job else {}
        normal = _normal_label(job) if job else None
        dataset_id = job.dataset_id if job else None
    frame = _run_table(job_id)
    labelled = frame[frame["label"].notna()]
    scores = pd.DataFrame(
        {
            "label": labelled["label"].astype(str),
            "anomalous": (labelled["label"].astype(str) != str(normal)).astype(int),
            "s_nnd": labelled["s_nnd"],
            "s_lh": labelled["s_lh"],
        }
    )
    scores["kind"] = np.where(scores["anomalous"] == 1, "anomalous", "normal")
    return {
        "dataset_id": dataset_id,
        "normal_label": normal,
        "auroc_nnd": summary.get("auroc_nnd"),
        "auroc_lh": summary.get("auroc_lh"),
        "auroc_pixels": summary.get("auroc_pixels"),
        "silhouette": summary.get("silhouette"),
        "normal": int((scores["anomalous"] == 0).sum()),
        "anomalous": int(scores["anomalous"].sum()),
        "scores": scores,
    }


def roc_frames(
    job_ids: Sequence[int],
    *,
    titles: Mapping[int, str] | None = None,
    scores: Mapping[int, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Labelled scores of several runs in one frame with a `run` column, for ROC curves side by side.

    `titles` (run id → title) and `scores` (run id → `evaluation(run)["scores"]`): what the caller has
    already, so it is not read again; runs missing from them are read here.
    """
    if titles is None:
        every = runs()
        titles = dict(zip(every["id"], every["title"], strict=True))
    known = scores or {}
    frames = []
    for job_id in job_ids:
        labelled = known[job_id] if job_id in known else evaluation(job_id)["scores"]
        frames.append(labelled.assign(run=titles.get(job_id, f"#{job_id}")))
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "anomalous", "s_nnd", "s_lh"])
    )
