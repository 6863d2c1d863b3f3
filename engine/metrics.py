"""Evaluation where labels exist: AUROC (anomalous = positive) and the context clusters' silhouette.

The one definition of the ROC and its area: the worker's summaries, the dashboard's ROC charts and its
demo seed all call these (numpy and scikit-learn only, so the dashboard may import this module).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve, silhouette_score

SILHOUETTE_MAX_POINTS = 4000  # per context: silhouette is O(n²); a seeded sample keeps it to seconds


def anomaly_targets(labels: Sequence[str | None], normal_label: str | None) -> np.ndarray | None:
    """1 for anomalous, 0 for normal, per sample; None when AUROC is undefined here.

    Undefined: no normal label chosen, a sample without a label, or only one class present.
    """
    if normal_label is None or any(label is None for label in labels):
        return None
    targets = np.array([label != normal_label for label in labels], dtype=np.int64)
    if targets.min() == targets.max():
        return None
    return targets


def auroc(targets: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve with anomalous (1) as the positive class and higher score = more anomalous."""
    return float(roc_auc_score(targets, scores))


def roc(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """False- and true-positive rates from (0, 0) through every distinct score to (1, 1), and the AUROC;
    anomalous (1) is the positive class, higher score = more anomalous, tied scores form one step."""
    fpr, tpr, _ = roc_curve(targets, scores, drop_intermediate=False)
    return fpr, tpr, auroc(targets, scores)


def context_silhouette(features: np.ndarray, context_features: np.ndarray, seed: int = 0) -> float:
    """Silhouette (cosine) of the two context clusters: x vs t_c(x) features (paper App. E.4).

    > 0: separate context clusters; ≈ 0: overlapping; < 0: wrongly assigned.
    """
    n = features.shape[0]
    rng = np.random.default_rng(seed)
    keep = rng.permutation(n)[:SILHOUETTE_MAX_POINTS] if n > SILHOUETTE_MAX_POINTS else np.arange(n)
    points = np.concatenate([features[keep], context_features[keep]])
    labels = np.repeat([0, 1], len(keep))
    return float(silhouette_score(points, labels, metric="cosine"))
