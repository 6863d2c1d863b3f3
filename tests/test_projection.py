"""2-D projections of both contexts' features, fitted together (the paper's Figure 1)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.projection import project


def features(m: int, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(M, D) originals and their context features: two clusters, each context image near its original's mirror."""
    rng = np.random.default_rng(seed)
    plain = rng.normal(size=(m, d)) + np.r_[4.0, np.zeros(d - 1)]
    return plain, -plain + rng.normal(scale=0.1, size=(m, d))


def test_pca_is_the_top_two_principal_axes_of_both_contexts_unit_features_together():
    plain, context = features(20)
    out = project(plain, context, "pca")
    assert out.shape == (20, 4) and out.dtype == np.float32
    # by hand: unit rows, originals then context images, centred, onto the two leading right singular vectors
    points = np.concatenate([plain, context])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    centred = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    signs = np.sign(np.sum(out[:, :2] * expected[:20], axis=0))  # an axis' sign is arbitrary
    assert np.allclose(out[:, :2], expected[:20] * signs, atol=1e-5)  # x, y of each original
    assert np.allclose(out[:, 2:], expected[20:] * signs, atol=1e-5)  # cx, cy of its context image


def test_only_directions_count_the_features_are_normalised_first():
    plain, context = features(20, seed=1)
    assert np.allclose(project(3 * plain, 0.5 * context, "pca"), project(plain, context, "pca"), atol=1e-5)


def test_the_two_contexts_land_apart():
    plain, context = features(30, seed=2)
    out = project(plain, context, "pca")
    # the first axis separates the clusters: every original on one side, every context image on the other
    assert (np.sign(out[:, 0]) == np.sign(out[0, 0])).all() and (np.sign(out[:, 2]) == -np.sign(out[0, 0])).all()


def test_umap_with_too_few_points_falls_back_to_pca_and_unknown_methods_are_named():
    plain, context = features(1, seed=3)
    out = project(plain, context, "umap")  # 2 points: below what UMAP's layout needs
    assert out.shape == (1, 4) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="tsne"):
        project(plain, context, "tsne")


@pytest.mark.slow  # the first UMAP fit compiles numba code: close to a minute on a busy 2-core machine
def test_umap_is_seeded_and_keeps_the_contexts_apart():
    plain, context = features(30, seed=4)
    a, b = project(plain, context, "umap", seed=0), project(plain, context, "umap", seed=0)
    assert a.shape == (30, 4) and np.array_equal(a, b)  # the same seed, the same picture
    originals, contexts = a[:, :2], a[:, 2:]
    gap = np.linalg.norm(originals.mean(axis=0) - contexts.mean(axis=0))
    spread = max(originals.std(axis=0).max(), contexts.std(axis=0).max())
    assert gap > 2 * spread
