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

__all__ = ["SHOW", "filter_queue", "flag", "reference_share_above", "threshold_at_percentile"]
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


SCORE_MEANING = (
    "A score says how unlike the images the model trained on a sample is, higher = more anomalous: S_NND "
    "through its distance to the most similar training images, S_LH through how unlikely its features are "
    "under the training images' distribution. Each is compared with the training normals' own scores (every "
    "normal scored with itself and its exact copies left out), and the threshold flags what scores above "
    "the share of normals you choose."
)


def score_value_text(score: str, value: float) -> str:
    """A score as a reader takes it in: "cosine distance 0.048" (S_NND, 1 + S_NND ∈ [0, 2]: the mean cosine
    distance to the nearest training images) or "NLL 152.3" (S_LH), for the raw −0.9518 or 152.3456."""
    if not np.isfinite(value):
        return "no score"
    if score == "s_nnd":
        return f"cosine distance {1.0 + value:.3f}"
    return f"NLL {value:,.1f}"


def standing_text(value: float, reference: np.ndarray | None) -> str:
    """Where a score stands among the training normals' scores, in words that never saturate at 100 %.

    "above 1,041 of 1,050 training normals"; a score above every normal says how far: "above all 1,050
    training normals; 3.1 × as far above their median as the highest of them" (its distance from the
    normals' median in units of the highest normal's). Or why there is no such figure.
    """
    reference = np.asarray([] if reference is None else reference, dtype=np.float64)
    reference = reference[np.isfinite(reference)]
    if reference.size == 0:
        return "no training reference"
    if not np.isfinite(value):
        return "no score"
    n = reference.size
    below = int((reference < value).sum())
    if below < n:
        return f"above {below:,} of {n:,} training normals" if below else f"above none of the {n:,} training normals"
    median, highest = float(np.median(reference)), float(reference.max())
    text = f"above all {n:,} training normals" if n > 1 else "above the one training normal"
    if highest > median:
        text += f"; {(value - median) / (highest - median):,.1f} × as far above their median as the highest of them"
    return text
