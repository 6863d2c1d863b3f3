"""Runs for the pages: training runs and the scoring jobs done with them, one row each with settings,
timing, device and metrics (`listing`), a run's caption, and a few runs side by side.

A scoring job has no training settings of its own: they are its parent run's, and `listing` shows them so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import connection
from dashboard.formatting import CONTEXT_FREE, duration, method_label
from db import datasets as db_datasets
from db import job_reads as db_job_reads
from db import jobs as db_jobs
from db.job_configs import JobConfig, JobConfigError, ScoreJobConfig, TrainJobConfig
from db.models import Job
from engine.config import AUTO_BATCH, AUTO_CONTEXT, AUTO_ENCODER, AUTO_PRECISION, CLASSICAL_METHODS

RUN_COLUMNS = [
    "id", "title", "kind", "dataset", "status", "method", "context", "encoder", "image_size", "epochs", "tta",
    "normal", "device", "duration_s", "train_s", "auroc_nnd", "auroc_lh", "auroc_pixels", "silhouette", "n_scored",
    "created",
]  # fmt: skip
RUN_COLUMN_CONFIG = {
    "id": st.column_config.NumberColumn("#", format="#%d"),
    "title": st.column_config.TextColumn("run", help="What the run is: dataset, method (and context), normal class."),
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


# the train settings a run chooses when it starts, each with the value that asks for the choice
AUTO_VALUES = {"context": AUTO_CONTEXT, "encoder": AUTO_ENCODER, "batch_size": AUTO_BATCH, "precision": AUTO_PRECISION}


def settings(job: Job, parent: Job | None = None) -> dict[str, dict[str, Any]]:
    """The run config's sections a job's run used (data, train, score: `RunConfig.to_dict()`'s), for display:
    a training run's own; a scoring job's parent run's when the parent is given, else only its score section.
    A context, encoder, batch or precision of `auto` reads as the one the run chose, once it has started (its summary
    names it; the worker writes it when the images are loaded)."""
    run = parent if job.kind == "score" and parent is not None else job
    config = _config(run)
    if isinstance(config, TrainJobConfig):
        sections = {name: getattr(config, name) for name in config.sections()}
        summary = run.summary or {}  # what `auto` became when the run started (engine/run.py)
        for name, auto in AUTO_VALUES.items():
            if sections.get("train", {}).get(name) == auto and summary.get(name):
                sections["train"] = {**sections["train"], name: summary[name]}
        return sections
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

    Columns: RUN_COLUMNS (title: `run_label`, in tables and pickers), plus name, parent_id, dataset_id and
    has_model (False for a classical reference, which trains no model to score other datasets with).
    """
    with connection.session() as session:
        found = [
            j for j in db_job_reads.list_jobs(session=session, status=status, dataset_id=dataset_id) if j.kind in kinds
        ]
        parents = {j.id: j for j in db_job_reads.list_jobs(session=session, kind="train")}
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
    frame = pd.DataFrame(rows, columns=[*(c for c in RUN_COLUMNS if c != "title"), "name", "dataset_id", "parent_id",
                                        "has_model"])  # fmt: skip
    if labelled_only:
        frame = frame[frame["auroc_nnd"].notna()]
    frame["title"] = [
        run_label(r.id, r.kind, r.dataset, r.method, r.context, r.normal, r.parent_id) for r in frame.itertuples()
    ]
    return frame.reset_index(drop=True)


def run_label(
    run_id: int,
    kind: str,
    dataset: str,
    method: str | None,
    context: str | None,
    normal: str | None,
    parent_id: int | None = None,
) -> str:
    """What a run is, in one line: its number, dataset, method (with its context only where it trains one:
    never "simclr/invert") and normal class. The one label of a run on every page (the Runs table, pickers,
    Evaluate's legends); fixed for the run's life, since a widget showing it keeps its first label."""
    what = method_label(method, context) or kind
    normal_part = f" · normal {normal}" if normal else ""
    if kind == "score":
        parent = f"#{int(parent_id)}" if parent_id is not None and not pd.isna(parent_id) else "a deleted run"
        return f"#{run_id} {dataset} · scored with {parent} ({what}){normal_part}"
    return f"#{run_id} {dataset} · {what}{normal_part}"


# Which run a page shows before anyone picks: one that runs, else the newest finished one; a queued run last
# (it has nothing to show yet).
DEFAULT_ORDER = {"running": 0, "succeeded": 1, "failed": 2, "cancelled": 2}


def default_runs(frame: pd.DataFrame, count: int = 1) -> list[int]:
    """The ids of the `count` runs a page starts from: running ones, then finished ones (succeeded before
    failed), each newest first (`listing`'s order); queued ones only when nothing else is left."""
    order = sorted(range(len(frame)), key=lambda i: (DEFAULT_ORDER.get(frame["status"].iloc[i], 3), i))
    return [int(frame["id"].iloc[i]) for i in order[:count]]


@dataclass(frozen=True)
class RunGroup:
    """Runs that can be compared: one dataset, one normal class (another class is another task)."""

    key: str
    title: str
    ids: list[int]  # newest first


def comparison_groups(frame: pd.DataFrame) -> list[RunGroup]:
    """`frame`'s runs (a `listing`) grouped by (dataset, normal class), the group of the newest run first.
    Every run is in exactly one group; a run without a normal class is its own group's only kind."""
    groups: dict[tuple[int, str], list[int]] = {}
    names: dict[tuple[int, str], str] = {}
    for row in frame.itertuples():
        key = (int(row.dataset_id), str(row.normal or "(all)"))
        groups.setdefault(key, []).append(int(row.id))
        names[key] = str(row.dataset)
    return [
        RunGroup(
            f"{dataset_id}|{normal}",
            f"{names[(dataset_id, normal)]} · normal {normal} · {len(ids)} run{'s' if len(ids) != 1 else ''}",
            ids,
        )
        for (dataset_id, normal), ids in groups.items()
    ]


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
            job = db_job_reads.get_job(session=session, job_id=job_id)
            parent = db_job_reads.get_job(session=session, job_id=job.parent_id) if job and job.parent_id else None
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
