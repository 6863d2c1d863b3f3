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
from dashboard.results import run_table
from dashboard.reviews import with_reviews

EXPORTS = {
    "Reviewed samples": "reviewed",
    "Flagged samples": "flagged",
    "Flagged or reviewed": "either",
    "Every scored sample": "all",
}


def review_table(job_id: int, score: str = "s_nnd") -> pd.DataFrame:
    """The ranked queue by `score` (s_nnd or s_lh), with each sample's percentile and current verdict.

    Columns: sample_id, key, location, label, split, s_nnd, s_lh, rank, pct, verdict, note, reviewer,
    reviewed_at; rank 1 = most anomalous by `score`.
    """
    frame = run_table(job_id)
    suffix = "nnd" if score == "s_nnd" else "lh"
    frame = frame.assign(rank=frame[f"rank_{suffix}"], pct=frame[f"pct_{suffix}"]).sort_values("rank")
    columns = ["sample_id", "key", "location", "label", "split", "s_nnd", "s_lh", "rank", "pct"]
    return with_reviews(frame[columns]).reset_index(drop=True)


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
