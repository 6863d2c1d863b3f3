"""The Review page's ranked list: a run's scored samples in rank order by either score with their current
verdicts, on screen (`review_table`) and as CSV (`export_csv`, the verdicts read fresh at that moment).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from dashboard.formatting import when
from dashboard.results import reference_scores, run_scores, run_table, sample_rows
from dashboard.reviews import with_reviews, with_run_reviews
from db.ranking import percentile

EXPORTS = {
    "Reviewed samples": "reviewed",
    "Flagged samples": "flagged",
    "Flagged or reviewed": "either",
    "Every scored sample": "all",
}


def review_table(job_id: int, score: str = "s_nnd") -> pd.DataFrame:
    """The ranked queue by `score` (s_nnd or s_lh): every scored sample with its percentile and current verdict.

    Columns: sample_id, s_nnd, s_lh, rank, pct, verdict, note, reviewer, reviewed_at; rank 1 = most anomalous
    by `score`. Numbers and verdicts only, what the threshold, histogram and filters span: keys, labels, splits
    and locations come with `with_samples` for the rows a page shows (reading them for a 100k-sample run, with
    its projection, took seconds of every page load).
    """
    frame = run_scores(job_id)
    suffix = "nnd" if score == "s_nnd" else "lh"
    pct = percentile(frame[score].to_numpy(), reference_scores(job_id, score))
    frame = frame.assign(rank=frame[f"rank_{suffix}"], pct=pct).sort_values("rank")
    columns = ["sample_id", "s_nnd", "s_lh", "rank", "pct"]
    return with_run_reviews(frame[columns], job_id).reset_index(drop=True)


def with_samples(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of `review_table` (a page of them) with each sample's key, location, label and split, order kept."""
    found = sample_rows(rows["sample_id"].tolist())
    return rows.join(found, on="sample_id")


def export_csv(
    job_id: int, score: str, flagged_ids: Sequence[int] | np.ndarray, what: str, verdicts: Sequence[str] = ()
) -> bytes:
    """The review list as CSV: rank, scores, percentile, flag, verdict, note, reviewer, time, sample id, location.

    Reads the verdicts fresh at the moment of the export. `what`: a key of EXPORTS; `verdicts`: keep only
    samples whose current verdict is one of these (empty = any), e.g. the curator's list of "remove".
    """
    frame = run_table(job_id)
    suffix = "nnd" if score == "s_nnd" else "lh"
    frame = frame.assign(rank=frame[f"rank_{suffix}"], percentile=frame[f"pct_{suffix}"]).sort_values("rank")
    frame = with_reviews(frame, fresh=True)
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
