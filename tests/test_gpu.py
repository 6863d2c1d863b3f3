"""The CUDA paths: engine.device's policy (bfloat16 autocast around the forward pass only, pinned streaming,
cuDNN determinism) in training, embedding and scoring, against the same code on the CPU.

No GPU has run this code in CI; these run where one exists, through `benchmarks/gpu_check.sh`
(CON2_TEST_GPU=1 keeps tests/conftest.py from hiding the GPU). Tolerances are bfloat16's.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import engine.train
from engine.augment import con2_views
from engine.config import ScoreConfig, TrainConfig
from engine.device import BatchFeed, autocast, gather
from engine.embed import embed
from engine.losses import content_alignment_loss, context_contrasting_loss
from engine.model import Con2Model
from engine.sources import open_source
from engine.tta import score_images

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        os.environ.get("CON2_TEST_GPU") != "1" or not torch.cuda.is_available(),
        reason="needs a CUDA GPU and CON2_TEST_GPU=1 (run benchmarks/gpu_check.sh on a GPU machine)",
    ),
]


def digits(n: int, size: int = 16) -> torch.Tensor:
    """(n, 1, size, size) uint8 real digit images, upsampled."""
    source = open_source("digits")
    x = torch.as_tensor(np.stack([source.read(ref) for ref in source.refs()[:n]]))[:, None]  # (n, 1, 8, 8)
    return torch.nn.functional.interpolate(x.float(), size=size, mode="nearest").to(torch.uint8)


def test_loss_under_autocast_is_float32():
    generator = torch.Generator(device="cuda").manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(64, 32, device="cuda", generator=generator), dim=1)
    exact = content_alignment_loss(z, 0.2)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        under = content_alignment_loss(z, 0.2)
    assert under.dtype == torch.float32
    assert float(under) == pytest.approx(float(exact), rel=1e-5)


def test_training_with_amp_runs_and_matches_float32_features():
    pixels = digits(96)
    config = TrainConfig(epochs=2, batch_size=32, device="cuda", amp=True, seed=0)
    trained = engine.train.train(pixels, config)
    assert trained.device.type == "cuda"
    assert all(np.isfinite(h["loss"]) for h in trained.history)
    assert trained.config.precision == "bfloat16"  # what `auto` became on CUDA with amp, recorded
    bf16 = embed(trained.model, pixels, bf16=True)
    fp32 = embed(trained.model, pixels, bf16=False)
    cosine = torch.nn.functional.cosine_similarity(bf16, fp32, dim=1)
    assert float(cosine.min()) > 0.99  # bfloat16 keeps the direction the scores use


def test_scores_on_gpu_agree_with_cpu():
    pixels = digits(120)
    bank, queries = pixels[:80], pixels[80:]
    config = TrainConfig(epochs=1, batch_size=32, device="cuda", amp=False, seed=0)
    trained = engine.train.train(bank, config)
    on_gpu = score_images(trained, bank, queries, ScoreConfig(tta=4))
    trained.model.cpu()
    trained.device = torch.device("cpu")
    on_cpu = score_images(trained, bank, queries, ScoreConfig(tta=4))
    assert np.corrcoef(on_gpu.s_nnd, on_cpu.s_nnd)[0, 1] > 0.99
    assert np.corrcoef(on_gpu.s_lh, on_cpu.s_lh)[0, 1] > 0.99


def test_autocast_is_bfloat16_with_amp_and_float32_without():
    cuda = torch.device("cuda")
    a = torch.randn(8, 8, device=cuda)
    with autocast(cuda, True):
        assert (a @ a).dtype == torch.bfloat16
    with autocast(cuda, False):
        assert (a @ a).dtype == torch.float32


def test_views_are_built_in_float32_and_losses_computed_in_float32_outside_autocast(monkeypatch):
    seen = {}

    def views(*args, **kwargs):
        out = con2_views(*args, **kwargs)
        seen["views"] = (out.dtype, torch.is_autocast_enabled("cuda"))
        return out

    def forward(self, x):
        seen["forward under autocast"] = torch.is_autocast_enabled("cuda")
        return original_forward(self, x)

    def loss(z, *args):
        out = context_contrasting_loss(z, *args)
        seen["loss"] = (out.dtype, torch.is_autocast_enabled("cuda"))
        return out

    original_forward = Con2Model.forward
    monkeypatch.setattr(engine.train, "con2_views", views)
    monkeypatch.setattr(Con2Model, "forward", forward)
    monkeypatch.setattr(engine.train, "context_contrasting_loss", loss)
    engine.train.train(digits(64), TrainConfig(epochs=1, batch_size=32, device="cuda", amp=True, seed=0))
    assert seen == {
        "views": (torch.float32, False),
        "forward under autocast": True,
        "loss": (torch.float32, False),
    }


def test_a_feed_streams_through_pinned_memory_or_lives_on_the_gpu_with_the_same_batches():
    pixels = digits(50)
    cuda = torch.device("cuda")
    streamed, resident = BatchFeed(pixels, cuda), BatchFeed(pixels, cuda, resident_share=1.0)
    assert streamed.streaming and not streamed.pixels.is_cuda
    assert not resident.streaming and resident.pixels.is_cuda
    assert gather(pixels, torch.tensor([1, 2]), pinned=True).is_pinned()
    index = torch.randperm(50, generator=torch.Generator().manual_seed(0))[:16]
    for rows in (index, slice(40, 64)):
        a, b = streamed.take(rows), resident.take(rows)
        assert a.is_cuda and torch.equal(a, b) and torch.equal(a.cpu(), pixels[rows])
    # many copies in flight at once, no synchronisation between them: no staging buffer is overwritten early
    batches = [streamed.take(slice(start, start + 8)) for start in range(0, 50, 8)]
    assert torch.equal(torch.cat(batches).cpu(), pixels)


def test_training_streamed_from_pinned_memory_matches_training_from_gpu_memory(monkeypatch):
    pixels = digits(96)
    config = TrainConfig(epochs=2, batch_size=32, device="cuda", amp=True, seed=0)
    resident = engine.train.train(pixels, config)
    monkeypatch.setattr(engine.train, "DEVICE_RESIDENT_SHARE", 0.0)  # the set "does not fit": it streams
    streamed = engine.train.train(pixels, config)
    for a, b in zip(resident.history, streamed.history, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)  # the same batches, the same deterministic kernels


def test_seeded_training_repeats_under_the_determinism_flags():
    pixels = digits(96)
    config = TrainConfig(epochs=2, batch_size=32, device="cuda", amp=True, seed=3)
    first, second = engine.train.train(pixels, config), engine.train.train(pixels, config)
    for a, b in zip(first.history, second.history, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)
