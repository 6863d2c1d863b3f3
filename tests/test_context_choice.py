"""The `auto` context (engine/context_choice.py): equalize for greyscale images above 16 px, invert otherwise;
the run records the context it chose, in its config, its saved model and its summary."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.artifacts import Bundle
from engine.config import AUTO_CONTEXT, DataConfig, RunConfig, ScoreConfig, TrainConfig
from engine.context_choice import choose_context, is_greyscale, resolve_context
from engine.run import train_run
from engine.train import train


def grey(n: int = 20, side: int = 28, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """(n, channels, side, side) uint8 images whose channels are equal."""
    g = torch.Generator().manual_seed(seed)
    one = torch.randint(0, 256, (n, 1, side, side), generator=g, dtype=torch.uint8)
    return one.expand(n, channels, side, side).contiguous()


def colour(n: int = 20, side: int = 32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)


def test_greyscale_is_one_channel_or_three_that_agree_up_to_jpeg_noise():
    assert is_greyscale(grey(channels=1)) and is_greyscale(grey(channels=3))
    noisy = grey(channels=3).to(torch.int16)
    noisy[:, 1] += torch.randint(-1, 2, noisy[:, 1].shape, generator=torch.Generator().manual_seed(2))
    assert is_greyscale(noisy.clamp(0, 255).to(torch.uint8))  # a scan saved as JPEG in RGB: ±1 in a channel
    assert not is_greyscale(colour())


def test_a_few_tinted_scans_keep_a_folder_greyscale_but_many_do_not():
    images = grey(n=20, channels=3)
    few, many = images.clone(), images.clone()
    few[:1] = colour(n=1, side=28)  # 1 of 20 (5 %): a folder of scans with one tinted image, as BR35H has
    many[:4] = colour(n=4, side=28)  # 4 of 20 (20 %)
    assert is_greyscale(few)
    assert not is_greyscale(many)


def test_auto_is_equalize_for_greyscale_images_above_16_px_and_invert_otherwise():
    assert choose_context(grey(side=28)) == "equalize"
    assert choose_context(grey(side=32, channels=3)) == "equalize"
    assert choose_context(grey(side=16)) == "invert"  # the digits' size: equalising 17 grey levels lost there
    assert choose_context(colour(side=32)) == "invert"  # photographs


def test_an_explicit_context_is_kept_and_only_auto_is_replaced():
    images = grey(side=28)
    assert TrainConfig().context == AUTO_CONTEXT  # the engine's default
    for context in ("invert", "flip", "equalize"):
        assert resolve_context(TrainConfig(context=context), images).context == context
    chosen = resolve_context(TrainConfig(), images)
    assert chosen.context == "equalize" and chosen == TrainConfig(context="equalize")


def test_a_trained_model_records_the_context_it_chose():
    config = TrainConfig(epochs=1, batch_size=8, projection_dim=16)
    assert train(grey(n=16, side=20), config).config.context == "equalize"
    assert train(colour(n=16, side=20), config).config.context == "invert"


@pytest.mark.parametrize("method", ["con2", "pixels_knn"])
def test_a_run_on_greyscale_scans_names_the_context_in_its_config_model_and_summary(tmp_path, method):
    rng = np.random.default_rng(0)
    for split, labels in (("train", ["ok"] * 12), ("test", ["ok"] * 4 + ["bad"] * 4)):
        for i, label in enumerate(labels):
            (tmp_path / split / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).convert("RGB").save(
                tmp_path / split / label / f"{i}.png"
            )
    config = RunConfig(
        DataConfig(source=str(tmp_path), normal_label="ok", image_size=24),
        TrainConfig(method=method, epochs=1, batch_size=8, projection_dim=16),
        ScoreConfig(tta=2),
    )
    result = train_run(config)
    assert result.config.train.context == "equalize"
    if method == "con2":
        assert result.metrics["context"] == "equalize"
        saved = Bundle.from_bytes(Bundle(result.trained, result.bank, result.config.data).to_bytes(), "cpu")
        assert saved.trained.config.context == "equalize"  # a later scoring job scores with what it learned


def test_a_large_set_is_judged_on_an_evenly_spaced_sample():
    images = grey(n=5000, side=8, channels=3)
    images[::20] = colour(n=250, side=8)  # every 20th image tinted: 5 %, spread through the set
    assert is_greyscale(images)
    images[::4] = colour(n=1250, side=8)  # every 4th: 25 %
    assert not is_greyscale(images)
