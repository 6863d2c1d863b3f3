"""The classical references (engine/classical.py): raw pixels, no learning — each as a run's method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.classical import (
    IsolationForestScorer,
    PCAProjection,
    _path_length,
    fit_classical,
    flat_pixels,
    score_classical,
)
from engine.config import CLASSICAL_METHODS, METHODS, ConfigError, DataConfig, RunConfig, ScoreConfig, TrainConfig
from engine.copies import copy_groups
from engine.loading import load_data
from engine.run import Phase, train_run


def blobs(n: int = 40, seed: int = 0) -> torch.Tensor:
    """(n, 1, 8, 8) uint8 normals: one bright square in the same place, small noise; aligned alike."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 8, (n, 1, 8, 8))
    x[:, :, 2:6, 2:6] += 200
    return torch.as_tensor(x.clip(0, 255), dtype=torch.uint8)


def outlier() -> torch.Tensor:
    """(1, 1, 8, 8): the square moved to a corner."""
    x = np.full((1, 1, 8, 8), 10)
    x[:, :, 0:3, 5:8] = 250
    return torch.as_tensor(x, dtype=torch.uint8)


@pytest.mark.parametrize("method", CLASSICAL_METHODS)
def test_each_method_ranks_a_planted_outlier_first(method):
    bank = blobs(40)
    queries = torch.cat([blobs(15, seed=1), outlier()])  # the outlier is the last query
    result, fit_s = score_classical(bank, queries, TrainConfig(method=method), ScoreConfig())
    assert fit_s >= 0
    assert int(np.argmax(result.s_nnd)) == len(queries) - 1  # the method's own score, in the s_nnd slot
    assert int(np.argmax(result.s_lh)) == len(queries) - 1  # S_LH on the same features
    assert result.features.shape == result.context_features.shape and result.features.shape[0] == len(queries)
    assert result.neighbours.shape == result.neighbour_similarity.shape == (len(queries), 5)
    # the training images' leave-one-out reference: every one of them, finite, below the outlier
    assert result.reference_rows.tolist() == list(range(40))
    assert np.isfinite(result.train_s_nnd).all() and np.isfinite(result.train_s_lh).all()
    assert result.train_s_nnd.max() < result.s_nnd[-1]


@pytest.mark.parametrize("method", CLASSICAL_METHODS)
def test_leave_one_out_excludes_every_exact_copy_of_the_image(method):
    """A training image with a twin in the bank is not scored as normal for having it: its leave-one-out score
    equals that of the same image in a bank without the twin."""
    bank = blobs(30)
    twin = torch.cat([bank, bank[3:4]])  # row 30 is an exact copy of row 3
    assert copy_groups(twin)[30] == 3
    train = TrainConfig(method=method)
    score = ScoreConfig(lh_shrinkage="fixed")  # fixed: a Ledoit–Wolf refit on another bank would re-estimate ρ
    rows = np.array([3])
    with_twin, _ = score_classical(twin, twin[rows], train, score, query_in_bank=rows)
    alone, _ = score_classical(bank, bank[rows], train, score, query_in_bank=rows)
    naive, _ = score_classical(twin, twin[rows], train, score)  # not left out: its twin is its neighbour
    assert 3 not in with_twin.neighbours[0] and 30 not in with_twin.neighbours[0]
    if method != "pixels_iforest":  # the forest's draws differ with the bank: its own test is below
        assert naive.s_nnd[0] < with_twin.s_nnd[0]
    if method != "pixels_pca_knn":  # PCA's basis is refitted on either bank (module docstring)
        assert set(with_twin.neighbours[0]) == set(alone.neighbours[0])
        assert with_twin.s_lh[0] == pytest.approx(alone.s_lh[0], rel=1e-4)
    if method == "pixels_knn":
        assert with_twin.s_nnd[0] == pytest.approx(alone.s_nnd[0], abs=1e-6)


def test_the_forest_scores_a_training_image_only_with_the_trees_grown_without_it_and_its_copies():
    bank = flat_pixels(torch.cat([blobs(30), blobs(30)[:1], blobs(30)[:1]]))  # rows 30, 31 copy row 0
    scorer = IsolationForestScorer(seed=0).fit(bank, copy_groups(bank.reshape(32, 1, 8, 8)))
    in_bag = np.zeros((32, len(scorer.forest_.estimators_)), dtype=bool)
    for t, rows in enumerate(scorer.forest_.estimators_samples_):
        in_bag[rows, t] = True
    out_of_bag = ~(in_bag[0] | in_bag[30] | in_bag[31])
    assert 0 < out_of_bag.sum() < len(out_of_bag)
    h = scorer.depths(bank[:1].numpy())[0]  # (T,) path length of row 0 in each tree
    c = _path_length(np.array([scorer.psi_]))[0]
    assert scorer.anomaly_scores(bank[:1], np.array([0]))[0] == pytest.approx(2.0 ** (-h[out_of_bag].mean() / c))


def test_the_forest_without_exclusions_is_scikit_learns_own_score():
    x = torch.randn(200, 12, generator=torch.Generator().manual_seed(0))
    scorer = IsolationForestScorer(seed=3).fit(x)
    assert np.allclose(scorer.anomaly_scores(x).numpy(), -scorer.forest_.score_samples(x.numpy()), atol=1e-6)


def test_pca_keeps_the_components_for_its_share_of_variance_and_compares_reconstructions():
    bank = flat_pixels(blobs(50))
    pca = PCAProjection(variance=0.95).fit(bank)
    assert pca.explained_variance_ratio_ >= 0.95 and 1 <= pca.n_components_ < bank.shape[1]
    # cosine of the coordinates is the cosine of the reconstructions mean + P(x − mean)
    z = pca.transform(bank[:2])
    mean = bank.mean(dim=0)
    recon = mean + (bank[:2] - mean) @ pca.components_.T @ pca.components_
    cos = torch.nn.functional.cosine_similarity
    assert cos(z[:1], z[1:]).item() == pytest.approx(cos(recon[:1], recon[1:]).item(), abs=1e-5)


def test_a_bank_of_identical_images_still_scores_finitely():
    bank = torch.full((5, 1, 8, 8), 7, dtype=torch.uint8)
    for method in CLASSICAL_METHODS:
        result, _ = score_classical(bank, torch.cat([bank[:2], outlier()]), TrainConfig(method=method), ScoreConfig())
        assert np.isfinite(result.s_nnd).all() and np.isfinite(result.s_lh).all(), method


# Measured on the bundled digits at 16 px, digit 0 normal against the other nine (train split normals, the
# whole test split scored; 122 training images, 539 scored): AUROC of the method's score (s_nnd slot)
# pixels_knn 1.000, pixels_pca_knn 1.000, pixels_iforest 0.998. The floors sit a few points below.
DIGITS_FLOOR = {"pixels_knn": 0.97, "pixels_pca_knn": 0.97, "pixels_iforest": 0.95}


@pytest.fixture(scope="module")
def digits():
    data = DataConfig(source="digits", normal_label="0", image_size=16)
    return data, load_data(data)


@pytest.mark.parametrize("method", CLASSICAL_METHODS)
def test_train_run_end_to_end_on_digits_clears_its_auroc_floor(method, digits):
    data, loaded = digits
    events = []
    result = train_run(RunConfig(data, TrainConfig(method=method), ScoreConfig()), on_progress=events.append)
    assert result.trained is None  # nothing was trained: no model, no bundle
    names = [e.name for e in events if isinstance(e, Phase)]
    assert {"loading", "training", "scoring"} <= set(names) and all(isinstance(e, Phase) for e in events)
    metrics = result.metrics
    print(method, {k: metrics[k] for k in ("auroc_nnd", "auroc_lh", "auroc_pixels", "train_s", "score_s")})
    assert metrics["auroc_nnd"] >= DIGITS_FLOOR[method]
    assert metrics["auroc_lh"] >= 0.9
    assert metrics["epochs_trained"] == 0 and metrics["silhouette"] is None
    assert metrics["n_train"] == len(loaded.train) and metrics["n_scored"] == len(loaded.score)
    assert len(result.scores.s_nnd) == len(result.scored) and result.scores.train_s_nnd is not None
    if method == "pixels_knn":  # the same score as the raw-pixel reference every run reports
        assert metrics["auroc_nnd"] == pytest.approx(metrics["auroc_pixels"])


@pytest.mark.parametrize("method", CLASSICAL_METHODS)
def test_fit_classical_alone_scores_as_score_classical_does(method):
    """The quality suite's references score with fit_classical alone (no S_LH, no reference scores): the ranking
    must be the run's own, leave-one-out of a scored training image included."""
    bank = blobs(40)
    queries = torch.cat([bank[:5], blobs(10, seed=1), outlier()])
    in_bank = np.array([0, 1, 2, 3, 4] + [-1] * 11)
    result, _ = score_classical(
        bank, queries, TrainConfig(method=method, seed=3), ScoreConfig(k=2), query_in_bank=in_bank
    )
    fitted = fit_classical(bank, method, k=2, seed=3)
    alone = fitted.scorer.anomaly_scores(fitted.features(queries), torch.as_tensor(in_bank))
    assert np.array_equal(alone.numpy(), result.s_nnd)
    with pytest.raises(ValueError, match="not a classical method"):
        fit_classical(bank, "con2")


def test_the_methods_are_values_of_the_method_field_and_unknown_ones_are_refused():
    assert set(CLASSICAL_METHODS) <= set(METHODS)
    assert RunConfig.from_dict({"train": {"method": "pixels_iforest"}}).train.method == "pixels_iforest"
    unknown = r"TrainConfig.method: unknown value 'pixels_svm'; choose one of .*pixels_knn"
    with pytest.raises(ConfigError, match=unknown):
        TrainConfig(method="pixels_svm")


def test_the_progress_callback_can_cancel_a_classical_run():
    from engine.train import TrainingCancelled

    heard = []

    def stop_when_scoring(phase, done, total):
        heard.append(phase)
        return phase != "scoring"

    with pytest.raises(TrainingCancelled):
        score_classical(blobs(10), blobs(3, seed=1), TrainConfig(method="pixels_knn"), ScoreConfig(),
                        on_progress=stop_when_scoring)  # fmt: skip
    assert heard == ["training", "training", "scoring"]
