"""The model bundle: what `to_bytes` writes, `from_bytes` reads back whole, and it scores as the original did."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from engine.artifacts import MODEL_FILE, Bundle
from engine.checkpoint import CheckpointError
from engine.config import DataConfig, ScoreConfig, TrainConfig
from engine.data import ImageSet, SampleRef
from engine.train import train
from engine.tta import score_images


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (16, 1, 12, 12), generator=g, dtype=torch.uint8)
    refs = [SampleRef(f"train/{i}", f"set.npz:train[{i}]", "0" if i % 2 else None, "train") for i in range(16)]
    trained = train(pixels, TrainConfig(epochs=1, batch_size=8, projection_dim=16, context="flip", seed=3))
    data = DataConfig(source="set.npz", normal_label="0", image_size=12, crop_fraction=0.875)
    return Bundle(trained, ImageSet(pixels, refs), data)


def assert_same_bundle(back: Bundle, bundle: Bundle) -> None:
    assert back.trained.config == bundle.trained.config and back.data == bundle.data
    assert back.trained.image_size == bundle.trained.image_size == 12
    assert back.trained.history == bundle.trained.history and back.trained.wall_s == bundle.trained.wall_s
    assert back.trained.images_per_s == bundle.trained.images_per_s
    assert back.bank.refs == bundle.bank.refs and torch.equal(back.bank.pixels, bundle.bank.pixels)
    theirs, ours = back.trained.model.state_dict(), bundle.trained.model.state_dict()
    assert list(theirs) == list(ours)
    assert all(torch.equal(theirs[k].cpu(), ours[k].cpu()) for k in ours)  # weights and batch-norm statistics
    assert not back.trained.model.training


def test_a_bundle_reads_back_whole_and_scores_as_the_original(bundle):
    back = Bundle.from_bytes(bundle.to_bytes(), device="cpu")
    assert_same_bundle(back, bundle)
    queries = torch.randint(0, 256, (5, 1, 12, 12), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    config = ScoreConfig(tta=2, seed=4, lh_shrinkage="fixed")
    before = score_images(bundle.trained, bundle.bank.pixels, queries, config)
    after = score_images(back.trained, back.bank.pixels, queries, config)
    assert np.array_equal(before.s_nnd, after.s_nnd) and np.array_equal(before.s_lh, after.s_lh)
    assert np.array_equal(before.features, after.features)


def test_a_con2_bundle_with_the_auxiliary_rotation_head_reads_back_whole(bundle):
    """TrainConfig.rotation_weight > 0 gives Con2 a rotation head: the bundle rebuilds the model with it."""
    trained = train(bundle.bank.pixels, TrainConfig(epochs=1, batch_size=8, projection_dim=16, rotation_weight=0.5))
    rotating = Bundle(trained, bundle.bank, bundle.data)
    back = Bundle.from_bytes(rotating.to_bytes(), device="cpu")
    assert back.trained.model.shift_head is not None
    assert_same_bundle(back, rotating)


def test_save_and_load_through_a_file_or_its_directory(bundle, tmp_path):
    path = bundle.save(tmp_path / "run" / MODEL_FILE)
    assert_same_bundle(Bundle.load(path, device="cpu"), bundle)
    assert_same_bundle(Bundle.load(tmp_path / "run", device="cpu"), bundle)
    with pytest.raises(FileNotFoundError, match=f"no trained model at {tmp_path / 'none' / MODEL_FILE}"):
        Bundle.load(tmp_path / "none" / MODEL_FILE)


def test_a_file_that_is_not_a_bundle_is_refused_by_name(bundle):
    buffer = io.BytesIO()
    torch.save({"format": 1, "image_size": 12}, buffer)
    with pytest.raises(CheckpointError, match=r"^the saved model is not a model a con2 train run wrote \(no "):
        Bundle.from_bytes(buffer.getvalue())


def test_a_bundle_with_non_finite_weights_is_refused(bundle):
    broken = Bundle.from_bytes(bundle.to_bytes(), device="cpu")
    with torch.no_grad():
        broken.trained.model.context_head.net[0].bias[0] = float("nan")
    with pytest.raises(CheckpointError, match="weights hold NaN or infinite values"):
        Bundle.from_bytes(broken.to_bytes(), device="cpu")
