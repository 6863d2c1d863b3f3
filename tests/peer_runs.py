"""What every peer method's tests check the same way (tests/test_csi.py, test_oecl.py, test_firm.py,
test_masked.py): a tiny seeded run on the bundled digits, finite losses and scores, and a model bundle that
scores exactly as the model it was saved from."""

from __future__ import annotations

import math

import numpy as np

from engine.artifacts import Bundle
from engine.config import DataConfig, RunConfig, ScoreConfig, TrainConfig
from engine.run import RunResult, train_run
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
