"""The `auto` encoder (engine/encoder_choice.py): resnet_small's first two stages for greyscale images above 16 px,
resnet_small otherwise; the run records the encoder it chose, in its config, its saved model and its summary, and a
saved model is rebuilt with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from engine import context_choice
from engine.artifacts import Bundle
from engine.config import (
    AUTO_BATCH,
    AUTO_ENCODER,
    AUTO_ROTATION,
    ConfigError,
    DataConfig,
    RunConfig,
    ScoreConfig,
    TrainConfig,
)
from engine.context_choice import resolve_context, scan_like
from engine.encoder_choice import batch_for, choose_encoder, resolve_auto, resolve_encoder, rotation_for
from engine.run import train_run
from engine.train import train
from tests.test_context_choice import colour, grey


def test_auto_is_the_two_stage_encoder_for_greyscale_images_above_16_px_and_resnet_small_otherwise():
    assert choose_encoder(grey(side=28)) == "resnet_small_s2"
    assert choose_encoder(grey(side=32, channels=3)) == "resnet_small_s2"  # scans saved as RGB
    assert choose_encoder(grey(side=16)) == "resnet_small"  # the digits' size: the two stages lost there
    assert choose_encoder(colour(side=32)) == "resnet_small"  # photographs: they lost there too
    for method in ("context_only", "content_only"):  # Con2's ablations train as Con2 does
        assert choose_encoder(grey(side=28), method) == "resnet_small_s2"
    for method in ("simclr", "csi", "firm", "self_oecl", "masked_contrastive"):  # not measured better for them
        assert choose_encoder(grey(side=28), method) == "resnet_small"
    assert resolve_encoder(TrainConfig(method="simclr"), grey(side=28)).encoder == "resnet_small"


def test_an_explicit_encoder_is_kept_and_only_auto_is_replaced():
    images = grey(side=28)
    assert TrainConfig().encoder == AUTO_ENCODER  # the engine's default
    for encoder in ("resnet18", "resnet_small", "resnet_small_s2"):
        assert resolve_encoder(TrainConfig(encoder=encoder), images).encoder == encoder
    assert resolve_encoder(TrainConfig(), images) == TrainConfig(encoder="resnet_small_s2")


def test_resolve_auto_agrees_with_each_choice_and_looks_at_the_images_once(monkeypatch):
    looks = []
    is_greyscale = context_choice.is_greyscale
    monkeypatch.setattr("engine.encoder_choice.is_greyscale", lambda pixels: looks.append(1) or is_greyscale(pixels))
    for images in (grey(side=28), grey(side=16), colour(side=32), colour(side=16)):
        fixed_rotation = {"rotation_weight": 0}
        for fields in ({}, {"method": "simclr"}, {"context": "invert"}, {"encoder": "resnet18"}, fixed_rotation):
            config = TrainConfig(**fields)
            expected = resolve_encoder(resolve_context(config, images), images)
            expected = (
                dataclasses.replace(expected, rotation_weight=rotation_for(config.method, is_greyscale(images)))
                if config.rotation_weight < 0
                else expected
            )
            expected = dataclasses.replace(expected, batch_size=batch_for(config.method, scan_like(images)))
            expected = dataclasses.replace(expected, precision="float32")  # tests/conftest.py: CON2_CPU_BF16=0
            looks.clear()
            assert resolve_auto(config, images) == expected
            assert len(looks) == 1
    fixed = TrainConfig(
        context="invert", encoder="resnet_small", rotation_weight=0.5, batch_size=64, precision="float32"
    )
    looks.clear()
    assert resolve_auto(fixed, grey(side=28)) is fixed and not looks  # nothing `auto`: the images are not looked at


def test_auto_rotation_is_on_for_con2_on_colour_photographs_and_off_on_greyscale_images():
    assert TrainConfig().rotation_weight == AUTO_ROTATION  # the engine's default
    on_photos = resolve_auto(TrainConfig(), colour(side=32))
    assert on_photos.rotation_weight == 1.0 and on_photos.rotation_views == "shared"  # no extra view: same cost
    assert resolve_auto(TrainConfig(), colour(side=16)).rotation_weight == 1.0  # photographs of any size
    for images in (grey(side=28), grey(side=32, channels=3), grey(side=16)):  # scans (x-rays lost 15) and digits
        assert resolve_auto(TrainConfig(), images).rotation_weight == 0.0
    for method in ("context_only", "content_only"):  # Con2's ablations train as Con2 does
        assert resolve_auto(TrainConfig(method=method), colour(side=32)).rotation_weight == 1.0
    for method in ("simclr", "csi", "firm"):  # only Con2 has the task
        assert resolve_auto(TrainConfig(method=method), colour(side=32)).rotation_weight == 0.0
    for weight in (0.0, 0.3, 2.0):  # an explicit weight is kept, on any images
        assert resolve_auto(TrainConfig(rotation_weight=weight), grey(side=28)).rotation_weight == weight
        assert resolve_auto(TrainConfig(rotation_weight=weight), colour(side=32)).rotation_weight == weight


def test_auto_batch_is_16_for_con2_on_scans_and_32_otherwise_and_an_explicit_batch_is_kept():
    assert TrainConfig().batch_size == AUTO_BATCH == 0  # the engine's default
    for images in (grey(side=28), grey(side=32, channels=3)):  # scans, also saved as RGB
        assert resolve_auto(TrainConfig(), images).batch_size == 16
        for method in ("context_only", "content_only"):  # Con2's ablations train as Con2 does
            assert resolve_auto(TrainConfig(method=method), images).batch_size == 16
        for method in ("simclr", "csi", "firm"):  # not measured as a default for them
            assert resolve_auto(TrainConfig(method=method), images).batch_size == 32
    for images in (grey(side=16), colour(side=32)):  # the tiny digits and photographs: mixed at 16 (finding 34)
        assert resolve_auto(TrainConfig(), images).batch_size == 32
    for batch in (2, 16, 64):
        assert resolve_auto(TrainConfig(batch_size=batch), grey(side=28)).batch_size == batch
    with pytest.raises(ConfigError, match="batch_size: 1 is below the minimum 2"):
        TrainConfig(batch_size=1)
    with pytest.raises(ConfigError, match="below the minimum 0"):
        TrainConfig(batch_size=-4)


def test_a_run_on_photographs_trains_the_rotation_head_and_records_the_weight():
    trained = train(colour(n=16, side=20), TrainConfig(epochs=1, batch_size=8, projection_dim=16))
    assert trained.config.rotation_weight == 1.0
    assert trained.model.shift_head is not None  # the head the rotation loss trains
    scans = train(grey(n=16, side=20), TrainConfig(epochs=1, batch_size=8, projection_dim=16))
    assert scans.config.rotation_weight == 0.0 and scans.model.shift_head is None


def test_a_trained_model_is_built_with_the_encoder_it_chose():
    config = TrainConfig(epochs=1, batch_size=8, projection_dim=16)
    scans = train(grey(n=16, side=20), config)
    photos = train(colour(n=16, side=20), config)
    assert (scans.config.encoder, photos.config.encoder) == ("resnet_small_s2", "resnet_small")
    assert scans.model.feature_size("pooled") == 32 and photos.model.feature_size("pooled") == 128
    assert not any(k.startswith("encoder.layer3") for k in scans.model.state_dict())


def scan_folder(root, rng, side: int) -> None:
    """A folder dataset of random greyscale scans: 12 normal ("ok") to train on, 4 normal and 4 "bad" to score."""
    for split, labels in (("train", ["ok"] * 12), ("test", ["ok"] * 4 + ["bad"] * 4)):
        for i, label in enumerate(labels):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(root / split / label / f"{i}.png")


def test_a_run_on_greyscale_scans_names_the_encoder_in_its_config_model_and_summary(tmp_path):
    rng = np.random.default_rng(0)
    scan_folder(tmp_path, rng, 24)
    config = RunConfig(
        DataConfig(source=str(tmp_path), normal_label="ok", image_size=24),
        TrainConfig(epochs=1, batch_size=8, projection_dim=16),
        ScoreConfig(tta=2),
    )
    result = train_run(config)
    assert result.config.train.encoder == result.metrics["encoder"] == "resnet_small_s2"
    assert result.config.train.rotation_weight == result.metrics["rotation_weight"] == 0.0  # `auto`: off on scans
    assert result.config.train.batch_size == result.metrics["batch_size"] == 8  # explicit: kept
    saved = Bundle.from_bytes(Bundle(result.trained, result.bank, result.config.data).to_bytes(), "cpu")
    assert saved.trained.config.encoder == "resnet_small_s2"  # rebuilt with the stages it trained, weights and all
    images = torch.as_tensor(rng.integers(0, 256, (3, 3, 24, 24), dtype=np.uint8)).float() / 127.5 - 1
    with torch.no_grad():
        assert torch.equal(saved.trained.model.features(images, "grid"), result.trained.model.features(images, "grid"))


# the map is halved once: in the stem (resnet_half_s2) or in stage 1's first block (resnet_half_late_s2)
@pytest.mark.parametrize(
    "encoder, stem_stride, stage1_stride", [("resnet_half_s2", 2, 1), ("resnet_half_late_s2", 1, 2)]
)
def test_the_half_width_options_train_score_and_are_rebuilt_with_their_strides(
    tmp_path, encoder, stem_stride, stage1_stride
):
    # the half-width options are never chosen by `auto` (finding 44: at equal time resnet_half_s2 costs chest x-rays
    # 1.6 points); asked for, each trains, and a saved model is rebuilt with the strides and the 64 channels it
    # trained (resnet_half_late_s2's in stage 1, not the stem): it scores as it did
    rng = np.random.default_rng(1)
    scan_folder(tmp_path, rng, 28)
    config = RunConfig(
        DataConfig(source=str(tmp_path), normal_label="ok", image_size=28),
        TrainConfig(epochs=1, batch_size=8, projection_dim=16, encoder=encoder),
        ScoreConfig(tta=2),
    )
    result = train_run(config)
    assert result.config.train.encoder == result.metrics["encoder"] == encoder
    assert result.trained.model.feature_size("grid") == 64 * 16
    saved = Bundle.from_bytes(Bundle(result.trained, result.bank, result.config.data).to_bytes(), "cpu")
    rebuilt = saved.trained.model.encoder
    assert rebuilt.conv1.stride == (stem_stride, stem_stride)
    assert rebuilt.layer1[0].conv1.stride == (stage1_stride, stage1_stride)
    images = torch.as_tensor(rng.integers(0, 256, (3, 3, 28, 28), dtype=np.uint8)).float() / 127.5 - 1
    with torch.no_grad():
        assert torch.equal(saved.trained.model.features(images, "grid"), result.trained.model.features(images, "grid"))
    assert resolve_auto(TrainConfig(), grey(side=28)).encoder == "resnet_small_s2"  # not the default
