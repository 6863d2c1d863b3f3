"""What every peer method's tests check the same way (tests/test_csi.py, test_oecl.py, test_firm.py,
test_masked.py): a tiny seeded run on the bundled digits, finite losses and scores, a model bundle that scores
exactly as the model it was saved from, and gradients that reach every head a method trains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.artifacts import Bundle
from engine.augment import ContentAugmentation
from engine.config import DataConfig, RunConfig, ScoreConfig, TrainConfig
from engine.model import Con2Model
from engine.run import RunResult, train_run
from engine.train import _objective
from engine.tta import score_images


def digits_run(method: str, normal: str = "0") -> RunConfig:
    """One epoch at 16 px, seed 2, 50 reference scores: seconds on a CPU."""
    return RunConfig(
        DataConfig(source="digits", normal_label=normal, image_size=16),
        TrainConfig(method=method, epochs=1, batch_size=32, projection_dim=16, device="cpu", seed=2),
        ScoreConfig(tta=1, reference_size=50),
    )


def tiny_digits_run(method: str, normal: str = "0") -> RunResult:
    return train_run(digits_run(method, normal))


def assert_trained_and_scored_finitely(result: RunResult) -> None:
    assert all(math.isfinite(v) for row in result.trained.history for v in row.values())
    for name in ("s_nnd", "s_lh", "features", "context_features", "train_s_nnd", "train_s_lh"):
        assert np.isfinite(getattr(result.scores, name)).all(), name


def assert_bundle_scores_as_the_original(result: RunResult, tta: int = 2) -> Bundle:
    """Save and load the run's bundle; the same queries score bit-identically. Returns the loaded bundle."""
    trained = result.trained
    back = Bundle.from_bytes(Bundle(trained, result.bank, result.config.data).to_bytes(), device="cpu")
    queries = result.scored.pixels[:20]
    config = ScoreConfig(tta=tta, tta_augment=True, seed=4)
    before = score_images(trained, result.bank.pixels, queries, config)
    after = score_images(back.trained, back.bank.pixels, queries, config)
    assert np.array_equal(before.s_nnd, after.s_nnd) and np.array_equal(before.train_s_nnd, after.train_s_nnd)
    return back


def assert_gradients_reach_the_rotation_head(method: str, seed: int) -> None:
    """One step's objective of a method with a rotation head (CSI, masked contrastive) on four random 12 px
    images: the total is its two terms' sum, and encoder, content head and rotation head all get a gradient;
    the context head (no peer method has a context) none."""
    torch.manual_seed(seed)
    config = TrainConfig(method=method, projection_dim=8, device="cpu")
    model = Con2Model("resnet_small", 12, 8, shift_classes=4)
    pixels = torch.randint(0, 256, (4, 1, 12, 12), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    augmentation = ContentAugmentation.from_config(config, 12)
    loss, l_rotation, l_contrast = _objective(
        model, pixels, config, augmentation, torch.Generator().manual_seed(0), 1.0
    )
    assert loss.item() == pytest.approx(l_contrast.item() + l_rotation.item(), rel=1e-6)
    loss.backward()
    for name, module in (("encoder", model.encoder), ("content", model.content_head), ("shift", model.shift_head)):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads), name
    assert all(p.grad is None for p in model.context_head.parameters())
