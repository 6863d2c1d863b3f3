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


def readable_scores(score: str, values: np.ndarray | float) -> np.ndarray:
    """Scores as a reader takes them in: 1 + S_NND, the mean cosine distance to the nearest training images
    (∈ [0, 2], for the raw −0.9518), or S_LH as it is (a negative log-likelihood)."""
    values = np.asarray(values, dtype=np.float64)
    return values + 1.0 if score == "s_nnd" else values


def score_value_text(score: str, value: float) -> str:
    """A score in words: "cosine distance 0.048" (S_NND) or "NLL 152.3" (S_LH), for the raw −0.9518 or 152.3456."""
    if not np.isfinite(value):
        return "no score"
    shown = float(readable_scores(score, value))
    return f"cosine distance {shown:.3f}" if score == "s_nnd" else f"NLL {shown:,.1f}"


def finite_reference(reference: np.ndarray | None) -> np.ndarray:
    """The training normals' scores that can stand as a reference (finite ones), unsorted."""
    reference = np.asarray([] if reference is None else reference, dtype=np.float64)
    return reference[np.isfinite(reference)]


def standing(values: np.ndarray, reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Where scores stand among the training normals' (finite) scores: for each, how many normals score below it
    and its reach — its distance above the normals' median in units of the highest normal's (1 = as high as the
    highest normal; NaN when every normal scores alike) — and how many normals there are."""
    values = np.asarray(values, dtype=np.float64)
    reference = np.sort(finite_reference(reference))
    if reference.size == 0:
        return np.zeros(len(values), dtype=np.int64), np.full(len(values), np.nan), 0
    below = np.searchsorted(reference, values, side="left")
    median, highest = float(np.median(reference)), float(reference[-1])
    reach = (values - median) / (highest - median) if highest > median else np.full(len(values), np.nan)
    return below, reach, int(reference.size)


def standing_text(value: float, reference: np.ndarray | None) -> str:
    """Where a score stands among the training normals' scores, in words that never saturate at 100 %.

    "above 1,041 of 1,050 training normals"; a score above every normal says how far: "above all 1,050
    training normals; 3.1 × as far above their median as the highest of them" (its reach, `standing`). Or why
    there is no such figure.
    """
    below, reach, n = standing(np.array([value], dtype=np.float64), reference)
    if n == 0:
        return "no training reference"
    if not np.isfinite(value):
        return "no score"
    if below[0] < n:
        return (
            f"above {below[0]:,} of {n:,} training normals" if below[0] else f"above none of the {n:,} training normals"
        )
    text = f"above all {n:,} training normals" if n > 1 else "above the one training normal"
    if np.isfinite(reach[0]):
        text += f"; {reach[0]:,.1f} × as far above their median as the highest of them"
    return text
