"""Evaluation where labels exist: the context silhouette against a loop reference, AUROC's direction."""

from __future__ import annotations

import numpy as np
import pytest

import engine.metrics
from engine.metrics import anomaly_targets, auroc, context_silhouette


def reference_silhouette(features: np.ndarray, context_features: np.ndarray) -> float:
    """Rousseeuw's silhouette with cosine distance 1 − cos, by loops: for each point, a = mean distance to the
    other points of its own context, b = mean distance to the other context's points, s = (b − a) / max(a, b)."""
    points = list(features) + list(context_features)
    cluster = [0] * len(features) + [1] * len(context_features)

    def distance(u, v):
        return 1 - float(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v))

    values = []
    for i, p in enumerate(points):
        same = [distance(p, q) for j, q in enumerate(points) if j != i and cluster[j] == cluster[i]]
        other = [distance(p, q) for j, q in enumerate(points) if cluster[j] != cluster[i]]
        a, b = sum(same) / len(same), sum(other) / len(other)
        values.append((b - a) / max(a, b))
    return sum(values) / len(values)


@pytest.mark.parametrize("shift", [0.0, 0.5, 3.0])  # overlapping, touching, apart
def test_context_silhouette_equals_the_loop_reference(shift):
    rng = np.random.default_rng(int(shift * 10))
    plain = rng.normal(size=(15, 6)) + shift
    context = rng.normal(size=(15, 6)) - shift
    assert context_silhouette(plain, context) == pytest.approx(reference_silhouette(plain, context), abs=1e-9)


def test_separate_context_clusters_score_near_one_and_identical_ones_below_zero():
    rng = np.random.default_rng(5)
    plain = rng.normal(scale=0.05, size=(20, 4)) + np.array([1.0, 0, 0, 0])
    assert context_silhouette(plain, -plain) > 0.9  # x and t_c(x) in opposite directions
    assert context_silhouette(plain, plain.copy()) < 0  # each point's twin sits in the other "cluster"


def test_a_large_set_is_scored_on_a_seeded_sample_of_pairs(monkeypatch):
    monkeypatch.setattr(engine.metrics, "SILHOUETTE_MAX_POINTS", 12)
    rng = np.random.default_rng(6)
    plain, context = rng.normal(size=(40, 5)) + 1, rng.normal(size=(40, 5)) - 1
    assert context_silhouette(plain, context, seed=1) == context_silhouette(plain, context, seed=1)
    samples = {round(context_silhouette(plain, context, seed=s), 12) for s in range(4)}
    assert len(samples) > 1  # another seed, another sample
    # a sample of 12 of 40 pairs estimates the whole: same sign, same size
    assert all(abs(s - reference_silhouette(plain, context)) < 0.15 for s in samples)


def test_auroc_counts_anomalous_as_positive_and_higher_scores_as_more_anomalous():
    targets = anomaly_targets(["0", "1", "0", "2"], "0")
    assert targets.tolist() == [0, 1, 0, 1]
    assert auroc(targets, np.array([0.1, 0.9, 0.2, 0.8])) == 1.0
    assert auroc(targets, np.array([0.9, 0.1, 0.8, 0.2])) == 0.0
    assert anomaly_targets(["0", None], "0") is None and anomaly_targets(["0", "0"], "0") is None
    assert anomaly_targets(["0", "1"], None) is None
