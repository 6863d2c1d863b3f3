"""Test-time augmented scoring (Eq. 16): the view plan, leave-one-out, and what a score returns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from engine.augment import ContentAugmentation
from engine.config import ScoreConfig, TrainConfig
from engine.embed import embed
from engine.train import train
from engine.tta import nnd_reads_pooled, score_images, view_plan


@pytest.fixture(scope="module")
def trained():
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (20, 1, 12, 12), generator=g, dtype=torch.uint8)
    config = TrainConfig(epochs=1, batch_size=10, projection_dim=16)
    return train(pixels, config), pixels


def test_view_plan_halves_between_x_and_its_context_image():
    plan = view_plan(ScoreConfig(tta=40, tta_augment=True), "invert", "con2")
    assert len(plan) == 40
    assert sum(q is None for q, _, _ in plan) == 20
    assert all(b == "invert" for q, b, _ in plan if q == "invert")  # the context half meets the context bank
    assert sorted(d for _, _, d in plan) == list(range(40))
    literal = view_plan(ScoreConfig(tta=4, tta_augment=True, context_bank="original"), "flip", "con2")
    assert [(q, b) for q, b, _ in literal] == [(None, None), (None, None), ("flip", None), ("flip", None)]
    assert view_plan(ScoreConfig(tta=6, tta_augment=True), "invert", "simclr") == [(None, None, i) for i in range(6)]
    assert view_plan(ScoreConfig(tta=1), "invert", "con2") == [(None, None, None)]


def test_without_augmentation_each_distinct_view_is_scored_once():
    """The CPU recipe: x against the bank and x^c against the context bank, as they are; more views would repeat
    them, so A beyond 2 adds nothing; SimCLR has no context image, so x alone."""
    for tta in (2, 8, 40):
        assert view_plan(ScoreConfig(tta=tta), "invert", "con2") == [(None, None, None), ("invert", "invert", None)]
    assert view_plan(ScoreConfig(tta=8, context_bank="original"), "flip", "con2")[1] == ("flip", None, None)
    assert view_plan(ScoreConfig(tta=8), "invert", "simclr") == [(None, None, None)]


def one_view(trained, image: torch.Tensor, context: str | None, draw) -> np.ndarray:
    """g_θ(t(t_c(x))) of one (C, S, S) uint8 image, built step by step (App. D's order): [0, 1], three
    channels, the context, the draw of T, mean = std = 0.5, the encoder's pooled output."""
    x = image.float()[None] / 255  # (1, C, S, S)
    x = x.expand(-1, 3, -1, -1)
    if context == "invert":
        x = 1 - x
    if draw is not None:
        x = ContentAugmentation(trained.image_size).apply(x, draw)
    with torch.no_grad():
        return trained.model.features((x - 0.5) / 0.5).double().numpy()[0]


def reference_scores(
    trained, bank, queries, tta: int, seed: int, epsilon: float, augment: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 16 with loops: for each of A draws t_i, S_NND (minus the best cosine similarity, Eq. 12) and S_LH
    (−log N with Σ = S + εI, Eq. 13) of t_i(x) against the bank under t_i for the first half of the draws,
    of t_i(x^c) against the bank's context images under t_i for the second; the scores are the means.
    Without augmentation: x against the bank and x^c against the bank's context images, once each."""
    if tta == 1:
        plan = [(None, None)]
    elif not augment:
        plan = [(None, None), (trained.config.context, None)]
    else:  # the draws, in the order the scorer takes them from a generator seeded with ScoreConfig.seed
        generator = torch.Generator().manual_seed(seed)
        draws = [ContentAugmentation(trained.image_size).sample(1, generator, "cpu") for _ in range(tta)]
        plan = [(None if i < tta // 2 else trained.config.context, t) for i, t in enumerate(draws)]
    s_nnd, s_lh = np.zeros(len(queries)), np.zeros(len(queries))
    for context, draw in plan:
        units = np.stack([f / np.linalg.norm(f) for f in (one_view(trained, b, context, draw) for b in bank)])
        cov = np.cov(units, rowvar=False, bias=True) + epsilon * np.eye(units.shape[1])
        gaussian = multivariate_normal(units.mean(axis=0), cov)
        for m, query in enumerate(queries):
            q = one_view(trained, query, context, draw)
            q = q / np.linalg.norm(q)
            s_nnd[m] -= max(float(q @ u) for u in units) / len(plan)
            s_lh[m] -= gaussian.logpdf(q) / len(plan)
    return s_nnd, s_lh


@pytest.mark.parametrize("tta, augment", [(1, False), (2, False), (4, True)])
def test_scores_are_eq16_means_of_nearest_neighbour_and_gaussian_scores_over_the_views(trained, tta, augment):
    model, pixels = trained
    bank, queries = pixels[:12], pixels[12:]
    config = ScoreConfig(tta=tta, tta_augment=augment, seed=5, features="pooled", lh_shrinkage="fixed", lh_epsilon=1e-2)
    result = score_images(model, bank, queries, config)
    s_nnd, s_lh = reference_scores(model, bank, queries, tta, seed=5, epsilon=1e-2, augment=augment)
    assert np.allclose(result.s_nnd, s_nnd, atol=1e-5)
    assert np.allclose(result.s_lh, s_lh, rtol=1e-4)
    assert not math.isclose(float(result.s_nnd.std()), 0.0)  # the queries are told apart, not all scored alike
    if tta == 1:
        assert result.features.shape == result.context_features.shape == (8, model.model.feature_dim)
        assert np.allclose(result.features[0], one_view(model, queries[0], None, None), atol=1e-5)
        assert np.allclose(result.context_features[0], one_view(model, queries[0], "invert", None), atol=1e-5)
        assert result.neighbours.shape == (8, 5) and (result.neighbours < 12).all()
        assert (np.diff(result.neighbour_similarity, axis=1) <= 1e-6).all()  # best first
        assert np.allclose(result.neighbour_similarity[:, 0], -s_nnd, atol=1e-5)


def test_training_images_scored_leave_one_out_equal_a_bank_without_them(trained):
    model, pixels = trained
    # fixed shrinkage: with Ledoit–Wolf the leave-one-out keeps the full bank's ρ, a refit would re-estimate it
    config = ScoreConfig(tta=4, tta_augment=True, seed=3, lh_shrinkage="fixed")
    inside = np.arange(4)  # queries 0..3 are bank rows 0..3
    loo = score_images(model, pixels, pixels[:4], config, query_in_bank=inside)
    for i in range(4):
        keep = [j for j in range(len(pixels)) if j != i]
        alone = score_images(model, pixels[keep], pixels[i : i + 1], config, score_train=False)
        assert loo.s_nnd[i] == pytest.approx(alone.s_nnd[0], abs=1e-5)
        assert loo.s_lh[i] == pytest.approx(alone.s_lh[0], rel=1e-4)
        assert i not in loo.neighbours[i]  # an image is not its own neighbour
    # the training images' own reference scores are the same leave-one-out scores
    assert np.allclose(loo.train_s_nnd[:4], loo.s_nnd, atol=1e-5)
    assert loo.train_s_nnd.shape == (len(pixels),)


def test_a_training_image_scored_without_leave_one_out_finds_itself(trained):
    model, pixels = trained
    result = score_images(model, pixels, pixels[:3], ScoreConfig(tta=1), score_train=False)
    assert np.allclose(result.s_nnd, -1.0, atol=1e-5)  # cosine similarity 1 with itself
    assert result.train_s_nnd is None


def test_same_seed_same_scores_and_cancel_stops(trained):
    model, pixels = trained
    a = score_images(model, pixels[:10], pixels[10:], ScoreConfig(tta=4, tta_augment=True, seed=7))
    b = score_images(model, pixels[:10], pixels[10:], ScoreConfig(tta=4, tta_augment=True, seed=7))
    assert np.array_equal(a.s_nnd, b.s_nnd) and np.array_equal(a.s_lh, b.s_lh)
    from engine.train import TrainingCancelled

    with pytest.raises(TrainingCancelled):
        score_images(
            model, pixels[:10], pixels[10:], ScoreConfig(tta=4, tta_augment=True), on_progress=lambda done, total: False
        )


def test_reference_distribution_is_a_seeded_subset_when_the_bank_is_large(trained):
    model, pixels = trained
    full = score_images(model, pixels, pixels[:2], ScoreConfig(tta=1))
    subset = score_images(model, pixels, pixels[:2], ScoreConfig(tta=1, reference_size=5))
    assert full.reference_rows.tolist() == list(range(len(pixels)))
    assert len(subset.reference_rows) == 5 and len(set(subset.reference_rows.tolist())) == 5
    assert np.allclose(subset.train_s_nnd, full.train_s_nnd[subset.reference_rows], atol=1e-6)


def test_milder_test_time_crops_change_the_views_and_keep_scores_finite(trained):
    model, pixels = trained
    default = score_images(model, pixels[:10], pixels[10:], ScoreConfig(tta=4, tta_augment=True, seed=7))
    mild = score_images(model, pixels[:10], pixels[10:], ScoreConfig(tta=4, tta_augment=True, seed=7, tta_min_area=0.9))
    assert not np.allclose(default.s_nnd, mild.s_nnd)
    assert np.isfinite(mild.s_nnd).all() and np.isfinite(mild.s_lh).all()


def test_grid_features_score_where_a_structure_sits_and_projections_stay_pooled():
    g = torch.Generator().manual_seed(3)
    pixels = torch.randint(0, 256, (16, 1, 16, 16), generator=g, dtype=torch.uint8)
    trained = train(pixels, TrainConfig(epochs=1, batch_size=8, projection_dim=16, views_per_context=1))
    net = trained.model.encoder
    maps = []
    hook = net.layer2.register_forward_hook(lambda module, inputs, output: maps.append(output))
    try:
        embed(trained.model, pixels)
    finally:
        hook.remove()
    layer2 = maps[0]  # (16, C, 8, 8) at 16 px: each of the 4 × 4 cells is a 2 × 2 block
    expected = layer2.reshape(16, layer2.shape[1], 4, 2, 4, 2).mean(dim=(3, 5)).flatten(1)
    grid = embed(trained.model, pixels, features="grid")
    assert grid.shape == (16, trained.model.feature_size("grid")) == (16, 16 * layer2.shape[1])
    assert torch.allclose(grid, expected, atol=1e-5)
    bank, queries = pixels[:10], pixels[10:]
    result = score_images(trained, bank, queries, ScoreConfig(tta=1, features="grid"))
    unit = grid / grid.norm(dim=1, keepdim=True)
    by_grid = -(unit[10:] @ unit[:10].T).max(dim=1).values  # minus the best cosine similarity (Eq. 12)
    assert np.allclose(result.s_nnd, by_grid.numpy(), atol=1e-5)
    pooled = score_images(trained, bank, queries, ScoreConfig(tta=1, features="pooled"))
    assert not np.allclose(result.s_nnd, pooled.s_nnd)
    # what the Explore views project is the encoder's output, whichever features score
    assert result.features.shape == (6, trained.model.feature_dim)
    assert np.allclose(result.features, pooled.features, atol=1e-5)


def test_s_nnd_on_grid_and_pooled_output_is_the_mean_of_the_two_nearest_normals_and_auto_is_on_for_colour():
    """ScoreConfig.nnd_pooled (docs/quality.md finding 47): each block finds its own nearest normal, S_NND is the mean
    of the two cosine distances (the training images' leave-one-out reference too), the neighbours shown stay the
    grid's and S_LH does not change; `auto` reads the pooled output for colour photographs, not greyscale images."""
    g = torch.Generator().manual_seed(5)
    colour = torch.randint(0, 256, (18, 3, 16, 16), generator=g, dtype=torch.uint8)
    trained = train(colour, TrainConfig(epochs=1, batch_size=6, projection_dim=16, views_per_context=1))
    bank, queries = colour[:12], colour[12:]
    auto = score_images(trained, bank, queries, ScoreConfig())
    grid = score_images(trained, bank, queries, ScoreConfig(nnd_pooled="off"))
    pooled = score_images(trained, bank, queries, ScoreConfig(features="pooled"))
    assert nnd_reads_pooled(ScoreConfig(), bank)
    assert np.allclose(auto.s_nnd, (grid.s_nnd + pooled.s_nnd) / 2, atol=1e-6)
    assert np.allclose(auto.train_s_nnd, (grid.train_s_nnd + pooled.train_s_nnd) / 2, atol=1e-6)
    assert not np.allclose(auto.s_nnd, grid.s_nnd, atol=1e-4)  # the pooled block moves the score
    assert np.array_equal(auto.neighbours, grid.neighbours) and np.allclose(auto.s_lh, grid.s_lh)
    grey = bank[:, :1]
    assert not nnd_reads_pooled(ScoreConfig(), grey) and nnd_reads_pooled(ScoreConfig(nnd_pooled="on"), grey)
    assert not nnd_reads_pooled(ScoreConfig(nnd_pooled="on", features="pooled"), bank)  # one block: nothing to add
    grey_auto = score_images(trained, grey, queries[:, :1], ScoreConfig())
    grey_off = score_images(trained, grey, queries[:, :1], ScoreConfig(nnd_pooled="off"))
    grey_on = score_images(trained, grey, queries[:, :1], ScoreConfig(nnd_pooled="on"))
    assert np.array_equal(grey_auto.s_nnd, grey_off.s_nnd) and not np.allclose(grey_on.s_nnd, grey_off.s_nnd)
