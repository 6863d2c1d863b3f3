"""Runs for the pages: training runs and the scoring jobs done with them, one row each with settings,
timing, device and metrics (`listing`), a run's caption, and a few runs side by side.

A scoring job has no training settings of its own: they are its parent run's, and `listing` shows them so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import connection
from dashboard.formatting import CONTEXT_FREE, duration, method_label
from db import datasets as db_datasets
from db import jobs as db_jobs
from db.job_configs import JobConfig, JobConfigError, ScoreJobConfig, TrainJobConfig
from db.models import Job
from engine.config import CLASSICAL_METHODS

RUN_COLUMNS = [
    "id", "kind", "name", "dataset", "status", "method", "context", "encoder", "image_size", "epochs", "tta",
    "normal", "device", "duration_s", "train_s", "auroc_nnd", "auroc_lh", "auroc_pixels", "silhouette", "n_scored",
    "created",
]  # fmt: skip
RUN_COLUMN_CONFIG = {
    "id": st.column_config.NumberColumn("run", format="#%d"),
    "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
    "train_s": st.column_config.NumberColumn(
        "train (s)", format="%.1f", help="Seconds training took; for a classical reference, fitting it."
    ),
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


def _config(job: Job) -> JobConfig | None:
    """The job's typed config (`db.jobs.read_job_config`); None for one stored in a shape it refuses, whose
    settings the pages then leave blank rather than fail to show the job at all."""
    try:
        return db_jobs.read_job_config(job)
    except JobConfigError:
        return None


def settings(job: Job, parent: Job | None = None) -> dict[str, dict[str, Any]]:
    """The run config's sections a job's run used (data, train, score: `RunConfig.to_dict()`'s), for display:
    a training run's own; a scoring job's parent run's when the parent is given, else only its score section."""
    config = _config(parent if job.kind == "score" and parent is not None else job)
    if isinstance(config, TrainJobConfig):
        return {name: getattr(config, name) for name in config.sections()}
    if isinstance(config, ScoreJobConfig):
        return {"score": config.score}
    return {}


def listing(
    *,
    kinds: Sequence[str] = ("train", "score"),
    status: str | None = None,
    labelled_only: bool = False,
    dataset_id: int | None = None,
) -> pd.DataFrame:
    """Training runs and scoring jobs, newest first, with settings, timing, device and metrics.

    Columns: RUN_COLUMNS, plus title (for pickers), parent_id, dataset_id and has_model (False for a classical
    reference, which trains no model to score other datasets with).
    """
    with connection.session() as session:
        found = [j for j in db_jobs.list_jobs(session=session, status=status, dataset_id=dataset_id) if j.kind in kinds]
        parents = {j.id: j for j in db_jobs.list_jobs(session=session, kind="train")}
        names = {d.id: d.name for d in db_datasets.list_datasets(session=session)}
        rows = []
        for job in found:
            summary = job.summary or {}
            run = settings(job, parents.get(job.parent_id))
            normal = normal_label(job)
            ended = job.finished_at
            started = job.started_at
            method = run.get("train", {}).get("method")
            classical = method in CLASSICAL_METHODS  # trains nothing: no encoder, epochs or TTA of its own
            rows.append(
                {
                    "id": job.id,
                    "kind": job.kind,
                    "name": job.name or "",
                    "dataset": names.get(job.dataset_id, ""),
                    "dataset_id": job.dataset_id,
                    "parent_id": job.parent_id,
                    "status": job.status,
                    "method": method,
                    # SimCLR and the classical references have no context: the config's default is not shown as one
                    "context": None if method in CONTEXT_FREE else run.get("train", {}).get("context"),
                    "encoder": None if classical else run.get("train", {}).get("encoder"),
                    "image_size": run.get("data", {}).get("image_size"),
                    "epochs": 0 if classical else run.get("train", {}).get("epochs"),
                    "tta": None if classical else settings(job).get("score", {}).get("tta"),  # a scoring job's own
                    "normal": normal if normal is not None else ("(all)" if job.kind == "train" else ""),
                    "device": job.device,
                    "duration_s": (ended - started).total_seconds() if ended and started else None,
                    "train_s": summary.get("train_s"),
                    "auroc_nnd": summary.get("auroc_nnd"),
                    "auroc_lh": summary.get("auroc_lh"),
                    "auroc_pixels": summary.get("auroc_pixels"),
                    "silhouette": summary.get("silhouette"),
                    "n_scored": summary.get("n_scored"),
                    "created": job.created_at,
                    "has_model": not classical,
                }
            )
    frame = pd.DataFrame(rows, columns=[*RUN_COLUMNS, "dataset_id", "parent_id", "has_model"])
    if labelled_only:
        frame = frame[frame["auroc_nnd"].notna()]
    frame["title"] = [_title(r) for r in frame.itertuples()]
    return frame.reset_index(drop=True)


def _title(row: Any) -> str:
    """A run's name in pickers; fixed for the run's life (a widget showing it keeps its first label)."""
    what = method_label(row.method, row.context) or row.kind
    if row.kind == "score":
        return f"#{row.id} {row.dataset} · scored with #{int(row.parent_id)} ({what})"
    return f"#{row.id} {row.dataset} · {what} · normal {row.normal}"


def run_caption(job_id: int) -> str:
    frame = listing()
    row = frame[frame["id"] == job_id]
    if row.empty:
        return ""
    r = row.iloc[0]
    auroc = f"AUROC {r['auroc_nnd']:.3f} (S_NND)" if pd.notna(r["auroc_nnd"]) else ""
    parts = [str(r["title"]), auroc, f"device {r['device']}" if r["device"] else ""]
    return " · ".join(p for p in parts if p)


def compare_runs(job_ids: Sequence[int]) -> dict[str, pd.DataFrame]:
    """Metrics and settings of a few runs side by side; settings that differ come first."""
    frame = listing()
    frame = frame[frame["id"].isin(job_ids)].set_index("id").loc[list(job_ids)]
    metrics = frame[["auroc_nnd", "auroc_lh", "auroc_pixels", "silhouette"]].copy()
    metrics.insert(0, "run", [f"#{i}" for i in frame.index])
    with connection.session() as session:
        configs = {}
        for job_id in job_ids:
            job = db_jobs.get_job(session=session, job_id=job_id)
            parent = db_jobs.get_job(session=session, job_id=job.parent_id) if job and job.parent_id else None
            run = settings(job, parent) if job else {}
            flat = {f"{section}.{k}": v for section, values in run.items() for k, v in values.items()}
            flat.update(
                {
                    "duration": duration(frame.loc[job_id, "duration_s"]),
                    "train time": duration(frame.loc[job_id, "train_s"]),
                    "device": frame.loc[job_id, "device"],
                }
            )
            configs[f"#{job_id}"] = {k: "" if v is None else str(v) for k, v in flat.items()}
    table = pd.DataFrame(configs)
    differs = table.nunique(axis=1) > 1
    table = pd.concat([table[differs], table[~differs]])
    return {"metrics": metrics.reset_index(drop=True), "config": table}


def normal_label(job: Job) -> str | None:
    """The label a run (or its scoring job) treats as normal; None when every image is normal."""
    config = _config(job)
    if isinstance(config, ScoreJobConfig):
        return config.normal_label
    return config.data.get("normal_label") if isinstance(config, TrainJobConfig) else None
