"""A finished run's results for the pages: the per-sample table (scores, ranks, percentiles, projection),
the projection's points, thumbnails of a selection, one sample's case, the evaluation (AUROC,
silhouette, labelled scores) and ROC curves of several runs.

A run's table is read once (`st.cache_data`) under its job's stamp, so a 20k-sample run is read once
and every view slices the same frame; verdicts are joined on top of it (`reviews.with_run_reviews`). The
Review page reads less: the scores alone (`run_scores`), and keys and locations of the rows it shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import connection, gallery, triage
from dashboard import runs as run_list
from dashboard.datasets import thumbnails
from dashboard.jobs import job_stamp
from dashboard.reviews import with_run_reviews
from db import datasets as db_datasets
from db import job_configs as db_job_configs
from db import job_reads as db_job_reads
from db import results as db_results
from db import reviews as db_reviews
from engine.config import CONTEXTS

SELECTION_LIMIT = 60  # thumbnails shown for a box or lasso selection
FULL_MAX_PIXELS = 50_000_000  # a larger original is not shown at full resolution (the browser would choke)


def projection_methods() -> list[str]:
    """The 2-D projections a run stores (the queue's list, the engine's methods), for the Explore page."""
    return list(db_job_configs.PROJECTIONS)


@st.cache_data(max_entries=8, show_spinner="Loading the run…")
def _run_frame(url: str, job_id: int, method: str, stamp: str) -> pd.DataFrame:
    """Everything per scored sample of a finished run, most anomalous (S_NND) first."""
    with connection.sessions(url).begin() as session:
        columns = db_results.read_run_table(session=session, job_id=job_id, method=method)
        job = db_job_reads.get_job(session=session, job_id=job_id)
        locations = db_datasets.sample_locations(session=session, dataset_id=job.dataset_id) if job else {}
    frame = pd.DataFrame(columns)
    frame["location"] = frame["sample_id"].map(locations)
    return frame


def run_table(job_id: int, method: str = "umap") -> pd.DataFrame:
    """Scores and ranks do not depend on `method` (only x, y, cx, cy do): pass the method the page
    already shows, so its cached frame is reused rather than a second one read."""
    return _run_frame(connection.database_url(), job_id, method, job_stamp(job_id))


def projection_points(job_id: int, method: str) -> pd.DataFrame:
    """The run's 2-D projection with what a point can be coloured by (scores, label, split, verdict)."""
    frame = run_table(job_id, method)
    frame = frame[frame["x"].notna()]
    columns = ["sample_id", "key", "x", "y", "cx", "cy", "s_nnd", "s_lh", "label", "split"]
    frame = with_run_reviews(frame[columns], job_id)  # cached by run, not by 100k ids (hashing them took seconds)
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
    ranks = run_table(job_id, method).set_index("sample_id")["rank_nnd"]
    # Vectorised: a lasso over a thinned 100k-sample chart can enclose tens of thousands of ids.
    known = ranks.reindex(pd.Index(list(dict.fromkeys(int(i) for i in sample_ids)))).dropna()
    return [int(i) for i in known.sort_values(kind="stable").index]


def run_thumbnails(job_id: int, sample_ids: Sequence[int], method: str = "umap") -> dict[str, list[Any]]:
    """Thumbnails of some of a run's samples with captions (key, S_NND rank) and names for pickers."""
    frame = run_table(job_id, method).set_index("sample_id")
    pngs = thumbnails(sample_ids)
    kept = [i for i in sample_ids if i in pngs and i in frame.index]
    names = [f"#{frame.at[i, 'rank_nnd']} {frame.at[i, 'key']}" for i in kept]
    return {"ids": kept, "pngs": [pngs[i] for i in kept], "captions": names, "names": names}


@st.cache_data(max_entries=16, show_spinner=False)
def _reference(url: str, job_id: int, stamp: str) -> dict[str, np.ndarray]:
    with connection.sessions(url).begin() as session:
        return db_results.read_scores(session=session, job_id=job_id, role="reference")


def reference_scores(job_id: int, score: str = "s_nnd") -> np.ndarray:
    """The training normals' leave-one-out scores of a run (the percentiles' reference)."""
    return _reference(connection.database_url(), job_id, job_stamp(job_id))[score]


@st.cache_data(max_entries=8, show_spinner="Loading the run…")
def _scores(url: str, job_id: int, stamp: str) -> pd.DataFrame:
    with connection.sessions(url).begin() as session:
        return pd.DataFrame(db_results.read_scores(session=session, job_id=job_id, role="scored"))


def run_scores(job_id: int) -> pd.DataFrame:
    """Every scored sample's scores and ranks, nothing else (sample_id, s_nnd, s_lh, rank_nnd, rank_lh), most
    anomalous by S_NND first: what the Review page's threshold, histogram and filters span. Numbers only, so a
    100k-sample run is read in a fraction of `run_table`'s time and copied out of the cache in milliseconds; a
    page adds keys, labels and locations for the rows it shows (`sample_rows`)."""
    return _scores(connection.database_url(), job_id, job_stamp(job_id))


def sample_rows(sample_ids: Sequence[int]) -> pd.DataFrame:
    """key, location, label and split of the given samples, indexed by sample id (unknown ids absent)."""
    with connection.session() as session:
        samples = db_datasets.get_samples(session=session, sample_ids=[int(i) for i in sample_ids])
        rows = [(i, s.key, s.location, s.label, s.split) for i, s in samples.items()]
    return pd.DataFrame(rows, columns=["sample_id", "key", "location", "label", "split"]).set_index("sample_id")


def sample_case(job_id: int, sample_id: int, method: str = "umap") -> dict[str, Any] | None:
    """One scored sample: image and context image, scores, ranks, percentiles, verdict and note with their
    authors, the history of its reviews, nearest training images."""
    # One sample's row, not the run's table: the Review page shows a case without reading the whole run.
    with connection.session() as session:
        r = db_results.read_scored_sample(session=session, job_id=job_id, sample_id=sample_id)
        if r is None:
            return None
        job = db_job_reads.get_job(session=session, job_id=job_id)
        parent = db_job_reads.get_job(session=session, job_id=job.parent_id) if job and job.parent_id else None
        context = run_list.settings(job, parent).get("train", {}).get("context", "invert") if job else "invert"
        near = db_results.read_neighbours(session=session, job_id=job_id, sample_id=sample_id)
        samples = db_datasets.get_samples(session=session, sample_ids=[sample_id, *[n for n, _ in near]])
        this = samples[sample_id]
        key, location, label, split = this.key, this.location, this.label, this.split
        latest = db_reviews.latest_reviews(session=session, sample_ids=[sample_id]).get(sample_id)
        history = db_reviews.review_changes(session=session, sample_id=sample_id)
        copies = db_datasets.exact_copies(session=session, sample_id=sample_id)
        neighbour_keys = {i: (s.key, s.label) for i, s in samples.items()}
        review = (latest.verdict, latest.reviewer, latest.note) if latest else (None, None, None)
        noted = (latest.noted_by, latest.noted_at) if latest and latest.note else (None, None)
    pngs = thumbnails([sample_id, *[n for n, _ in near]])
    png = pngs.get(sample_id)
    return {
        "sample_id": sample_id,
        "key": key,
        "location": location,
        "label": label,
        "split": split,
        "s_nnd": r["s_nnd"],
        "s_lh": r["s_lh"],
        "rank_nnd": r["rank_nnd"],
        "rank_lh": r["rank_lh"],
        "scored": r["scored"],
        "nnd_text": triage.score_value_text("s_nnd", float(r["s_nnd"])),
        "lh_text": triage.score_value_text("s_lh", float(r["s_lh"])),
        "standing_nnd": triage.standing_text(float(r["s_nnd"]), reference_scores(job_id, "s_nnd")),
        "standing_lh": triage.standing_text(float(r["s_lh"]), reference_scores(job_id, "s_lh")),
        "context": context,
        "image": gallery.display(png) if png else None,
        # a run stored without the context it chose (`auto` unresolved) shows no context image rather than a wrong one
        "context_image": gallery.context_image(png, context) if png and context in CONTEXTS else None,
        "copies": copies,
        "verdict": review[0],
        "reviewer": review[1],
        "note": review[2],
        "noted_by": noted[0],
        "noted_at": noted[1],
        "history": history,  # db.reviews.ReviewChange, newest first
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


def evaluation(job_id: int) -> dict[str, Any]:
    """AUROC of both scores, silhouette, and the labelled scores (anomalous = not the normal label)."""
    with connection.session() as session:
        job = db_job_reads.get_job(session=session, job_id=job_id)
        summary = (job.summary or {}) if job else {}
        normal = run_list.normal_label(job) if job else None
        dataset_id = job.dataset_id if job else None
    frame = run_table(job_id)
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
        every = run_list.listing()
        titles = dict(zip(every["id"], every["title"], strict=True))
    known = scores or {}
    frames = []
    for job_id in job_ids:
        labelled = known[job_id] if job_id in known else evaluation(job_id)["scores"]
        frames.append(labelled.assign(run=titles.get(job_id, f"#{job_id}")))
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "anomalous", "s_nnd", "s_lh"])
    )


@st.cache_resource(max_entries=2, show_spinner="Opening the dataset…")
def _source_index(location: str) -> dict[str, Any]:
    """A dataset's source, opened once, with its samples by key (listing a folder of 40k files takes a while)."""
    from engine.sources import open_source

    source = open_source(location)
    return {"source": source, "refs": {ref.sample_id: ref for ref in source.refs()}}


def full_image(sample_id: int) -> np.ndarray | str:
    """A sample's original image at full resolution: (H, W) or (H, W, 3) uint8, upright; or why it cannot be
    shown (a moved file, an archive gone, an image over FULL_MAX_PIXELS)."""
    from PIL import ImageOps

    from engine.images import UnreadableImage, load_pixels

    with connection.session() as session:
        sample = db_datasets.get_samples(session=session, sample_ids=[sample_id]).get(sample_id)
        dataset = db_datasets.get_dataset(session=session, dataset_id=sample.dataset_id) if sample else None
        key, location = (sample.key, dataset.location) if sample and dataset else (None, None)
    if key is None or location is None:
        return "This sample is no longer in the database."
    try:
        index = _source_index(location)
        ref = index["refs"].get(key)
        if ref is None:
            return f"{key} is no longer in {location}."
        raw = index["source"].read(ref)
        if isinstance(raw, np.ndarray):
            return raw if raw.dtype == np.uint8 else np.clip(raw, 0, 255).astype(np.uint8)
        image = ImageOps.exif_transpose(load_pixels(raw, max_pixels=FULL_MAX_PIXELS))
    except (UnreadableImage, OSError, ValueError) as error:
        return f"The original cannot be read: {error}"
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return np.asarray(image)
