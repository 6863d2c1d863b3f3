"""Datasets for the pages: the list, registering a path or an upload, the registration's progress, the
Data page's counts and quality flags, thumbnails, and what the Train form needs to know about one.

A dataset's samples are read once (`st.cache_data`) under a stamp that changes when a registration or a
run adds samples, so the pages that slice them (counts, galleries, the Train form) share one read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import connection, gallery
from dashboard.formatting import queue_place
from dashboard.intake import IntakeError, check_location, store_upload
from dashboard.outcome import Outcome
from db import datasets as db_datasets
from db import job_reads as db_job_reads
from db import job_submit as db_job_submit
from db.session import data_dir
from engine.near_duplicates import MIN_SIDE as NEAR_DUPLICATE_MIN_SIDE

NO_LABEL, NO_SPLIT = "(no label)", "(no split)"  # the count table's names for samples without either
NORMAL_NAMES = ("normal", "0", "good", "healthy", "no", "negative", "ok")  # likely normal-class labels


def listing(*, registered_only: bool = False) -> pd.DataFrame:
    """Every dataset, newest first: id, name, location, kind, samples, title."""
    with connection.session() as session:
        rows = db_datasets.list_datasets(session=session)
        counts = db_datasets.sample_counts(session=session)
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
    with connection.session() as session:
        existing = [d for d in db_datasets.list_datasets(session=session) if d.location == spec]
        if existing:
            dataset = existing[0]
            job = db_job_submit.submit_register(session=session, dataset_id=dataset.id)
            return Outcome(
                f"{spec} is already registered as '{dataset.name}'; checking it again (job #{job.id}).",
                job_id=job.id,
                dataset_id=dataset.id,
            )
        dataset = db_datasets.create_dataset(session=session, location=spec, name=name)
        job = db_job_submit.submit_register(session=session, dataset_id=dataset.id)
        return Outcome(
            f"Registered '{dataset.name}': queued for the worker to read (job #{job.id}); its progress shows below.",
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
    with connection.session() as session:
        found = db_job_reads.list_jobs(session=session, kind="register", dataset_id=dataset_id, limit=1)
        if not found:
            return None
        job = found[0]
        place = db_job_reads.waiting(session=session).get(job.id) if job.status == "queued" else None
        if place is not None:
            text = queue_place(place.lane, place.ahead, place.registration)
        else:
            text = f"registering: {job.message}" if job.status == "running" and job.message else job.status
        return {
            "id": job.id,
            "status": job.status,
            "progress": float(job.progress or 0.0),
            "message": job.message,
            "text": text,  # what it is doing, in words: its place in the queue, or what the worker reports
            "error": job.error,
            "active": job.status in ("queued", "running"),
        }


def registrations_active() -> bool:
    """Whether any dataset is being registered (queued or running)."""
    with connection.session() as session:
        return bool(db_job_reads.count_active(session=session, kind="register"))


def _dataset_stamp(dataset_id: int) -> str:
    """Changes whenever a registration or a run adds samples to the dataset."""
    with connection.session() as session:
        dataset = db_datasets.get_dataset(session=session, dataset_id=dataset_id)
        count, top = db_datasets.sample_tally(session=session, dataset_id=dataset_id)
    return f"{dataset.registered_at if dataset else None}:{count}:{top}"


@st.cache_data(max_entries=16, show_spinner=False)
def _samples(url: str, dataset_id: int, stamp: str) -> pd.DataFrame:
    with connection.sessions(url).begin() as session:
        columns = db_datasets.read_samples(session=session, dataset_id=dataset_id)
    return pd.DataFrame(columns)


def _sample_frame(dataset_id: int) -> pd.DataFrame:
    return _samples(connection.database_url(), dataset_id, _dataset_stamp(dataset_id))


def _sorted_labels(values: Sequence[Any]) -> list[str]:
    labels = {str(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))}
    return sorted(labels, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))


def _too_small(samples: pd.DataFrame) -> int:
    """Readable images under engine.near_duplicates.MIN_SIDE a side: not compared for near duplicates."""
    if samples.empty:
        return 0
    side = np.minimum(samples["width"], samples["height"])
    return int(((side >= 0) & (side < NEAR_DUPLICATE_MIN_SIDE) & samples["readable"]).sum())


def dataset_overview(dataset_id: int) -> dict[str, Any]:
    """Counts for the Data page: images, by label and split (a split × label table), unreadable, duplicates."""
    with connection.session() as session:
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
        "too_small_to_compare": _too_small(samples),
        "near_duplicate_min_side": NEAR_DUPLICATE_MIN_SIDE,
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
    with connection.sessions(url).begin() as session:
        return db_datasets.read_thumbnails(session=session, sample_ids=list(ids))


def thumbnails(sample_ids: Sequence[int]) -> dict[int, bytes]:
    """PNG thumbnails by sample id (samples without one are absent)."""
    return _thumbnails(connection.database_url(), tuple(int(i) for i in sample_ids))


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
