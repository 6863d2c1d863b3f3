"""The CUDA paths: bfloat16 autocast training, embedding and scoring, against the same code on the CPU.

No GPU has run this code in CI; these run where one exists, through `benchmarks/gpu_check.sh`
(CON2_TEST_GPU=1 keeps tests/conftest.py from hiding the GPU). Tolerances are bfloat16's.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from engine.config import ScoreConfig, TrainConfig
from engine.embed import embed
from engine.losses import content_alignment_loss
from engine.sources import open_source
from engine.train import train
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
    trained = train(pixels, config)
    assert trained.device.type == "cuda"
    assert all(np.isfinite(h["loss"]) for h in trained.history)
    bf16 = embed(trained.model, pixels, amp=True)
    fp32 = embed(trained.model, pixels, amp=False)
    cosine = torch.nn.functional.cosine_similarity(bf16, fp32, dim=1)
    assert float(cosine.min()) > 0.99  # bfloat16 keeps the direction the scores use


def test_scores_on_gpu_agree_with_cpu():
    pixels = digits(120)
    bank, queries = pixels[:80], pixels[80:]
    config = TrainConfig(epochs=1, batch_size=32, device="cuda", amp=False, seed=0)
    trained = train(bank, config)
    on_gpu = score_images(trained, bank, queries, ScoreConfig(tta=4))
    trained.model.cpu()
    trained.device = torch.device("cpu")
    on_cpu = score_images(trained, bank, queries, ScoreConfig(tta=4))
    assert np.corrcoef(on_gpu.s_nnd, on_cpu.s_nnd)[0, 1] > 0.99
    assert np.corrcoef(on_gpu.s_lh, on_cpu.s_lh)[0, 1] > 0.99
