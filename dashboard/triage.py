"""Working down a ranked list: where to draw the line, which rows to show, how to say a percentile.

Scores: higher = more anomalous. The reference is the training images' leave-one-out scores, so "the
98th percentile of the reference" means what it says: about 2 % of normal training images score above it.
Pure functions of arrays and DataFrames; the Review page and the CSV export share them. The percentile
and threshold arithmetic is `db.ranking`'s (the one owner), offered here to the pages, which import no db.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from db.ranking import reference_share_above, threshold_at_percentile

__all__ = ["SHOW", "filter_queue", "flag", "percentile_text", "reference_share_above", "threshold_at_percentile"]
SHOW = ("All", "Unreviewed", "Reviewed", "Flagged")


def flag(scores: np.ndarray, *, reference: np.ndarray | None = None, percentile: float | None = None,
         count: int | None = None) -> tuple[float, np.ndarray]:  # fmt: skip
    """The threshold and which samples it flags, by a percentile of the reference or by a count.

    Percentile: flags scores strictly above the reference's `percentile`. Count: flags the `count` highest
    scores (ties at the cut are all flagged). Returns (threshold, (M,) bool mask).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if (percentile is None) == (count is None):
        raise ValueError("give exactly one of percentile or count")
    if percentile is not None:
        threshold = threshold_at_percentile(np.asarray([] if reference is None else reference), percentile)
        if np.isnan(threshold):
            return threshold, np.zeros(scores.shape, dtype=bool)
        return threshold, scores > threshold
    assert count is not None
    if count <= 0 or scores.size == 0:
        return float("inf"), np.zeros(scores.shape, dtype=bool)
    threshold = float(np.sort(scores)[::-1][min(count, scores.size) - 1])
    return threshold, scores >= threshold


def filter_queue(
    table: pd.DataFrame,
    *,
    show: str = "All",
    verdicts: Sequence[str] = (),
    score: str = "s_nnd",
    score_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """The rows of the ranked queue a reviewer asked for, order kept.

    table: columns `verdict` (None/NaN = unreviewed), `flagged` (bool) and the score. show: one of SHOW.
    verdicts: keep only these current verdicts (empty = any). score_range: inclusive bounds on `score`.
    """
    if show not in SHOW:
        raise ValueError(f"unknown view {show!r}; choose one of {', '.join(SHOW)}")
    keep = pd.Series(True, index=table.index)
    reviewed = table["verdict"].notna()
    if show == "Unreviewed":
        keep &= ~reviewed
    elif show == "Reviewed":
        keep &= reviewed
    elif show == "Flagged":
        keep &= table["flagged"].astype(bool)
    if verdicts:
        keep &= table["verdict"].isin(list(verdicts))
    if score_range is not None:
        low, high = score_range
        keep &= table[score].between(low, high)
    return table[keep]


def percentile_text(percentile: float | None) -> str:
    """ "more anomalous than 99.2% of the training normals", or why there is no such figure."""
    if percentile is None or not np.isfinite(percentile):
        return "no training reference"
    return f"more anomalous than {percentile:.1f}% of the training normals"
