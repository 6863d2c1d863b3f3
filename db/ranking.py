"""Ranks and percentiles of anomaly scores: the one owner of both, numpy only.

Scores: higher = more anomalous. A sample's rank is its place in its role, 1 = most anomalous, ties in
input order. Its percentile is the % of the reference (the training normals' leave-one-out scores)
scoring strictly below it: "more anomalous than 99.2 % of the training normals". The Review page's
threshold goes the other way, from a percentile to a score, with the share of normals above it.

db/results.py stores the ranks and reads the percentiles with these functions; the dashboard's triage
imports them. The engine's scores.csv is written in the same order (engine.artifacts may not import db/;
tests/test_facts.py holds the two equal).
"""

from __future__ import annotations

import numpy as np


def ranks(scores: np.ndarray) -> np.ndarray:
    """(M,) int64 ranks, 1 = highest score (most anomalous); ties keep input order."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    out = np.empty(len(order), dtype=np.int64)
    out[order] = np.arange(1, len(order) + 1)
    return out


def percentile(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """% of `reference` scores strictly below each score: "more anomalous than 99.2% of the normal
    training images". NaN when there is no reference."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(reference) == 0:
        return np.full(len(scores), np.nan)
    ordered = np.sort(np.asarray(reference, dtype=np.float64))
    return 100.0 * np.searchsorted(ordered, scores, side="left") / len(ordered)


def threshold_at_percentile(reference: np.ndarray, percentile: float) -> float:
    """The score below which `percentile` % of the reference lies (NaN without a reference)."""
    reference = np.asarray(reference, dtype=np.float64)
    if reference.size == 0:
        return float("nan")
    return float(np.percentile(reference, percentile))


def reference_share_above(reference: np.ndarray, threshold: float) -> float:
    """% of the reference (training normals) scoring above the threshold: the expected false-alarm rate."""
    reference = np.asarray(reference, dtype=np.float64)
    if reference.size == 0 or not np.isfinite(threshold):
        return float("nan") if reference.size == 0 else 0.0
    return float(100.0 * np.mean(reference > threshold))
