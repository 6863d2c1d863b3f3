"""2-D projections of both contexts' features, fitted together (the paper's Figure 1)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.projection import project, warm_up_in_background


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


@pytest.mark.slow  # compiles UMAP's numba code when no earlier test of the session did
def test_umap_reports_progress_that_increases_through_its_layout_and_a_raise_stops_it():
    """Issue 12: the first demo's progress bar sat at 93 % through two minutes of UMAP. Now the layout reports
    epoch by epoch, through UMAP's own tqdm bar; the same reports carry a cancel."""
    plain, context = features(200, seed=5)
    reports: list[tuple[float, str]] = []
    out = project(plain, context, "umap", seed=0, on_progress=lambda fraction, stage: reports.append((fraction, stage)))
    assert out.shape == (200, 4) and np.isfinite(out).all()
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[0] < 0.1 and fractions[-1] == 1.0
    epochs = [stage for _, stage in reports if stage.startswith("layout, epoch ")]
    assert len(epochs) >= 3 and epochs[0] == "layout, epoch 0/500" and epochs[-1] == "layout, epoch 500/500"
    assert len(set(fractions)) >= 4  # it moves, not one jump from start to end

    class Stop(Exception):
        pass

    def stop_in_the_layout(fraction: float, stage: str) -> None:
        if stage.startswith("layout"):
            raise Stop(stage)

    with pytest.raises(Stop, match="layout, epoch 0/500"):  # the first epoch's report, not the end of the fit
        project(plain, context, "umap", seed=0, on_progress=stop_in_the_layout)
    # compiled by now: no later fit in this process says it compiles, and the worker's warm-up has nothing to do
    assert not any(stage.startswith("compiling") for _, stage in reports[1:])
    assert warm_up_in_background() is None


def test_pca_reports_that_it_is_done():
    plain, context = features(20, seed=6)
    reports: list[tuple[float, str]] = []
    project(plain, context, "pca", on_progress=lambda fraction, stage: reports.append((fraction, stage)))
    assert reports == [(1.0, "done")]
