"""Batch-norm statistics re-estimated per context (engine/batchnorm.py)."""

from __future__ import annotations

import torch

from engine import batchnorm
from engine.augment import apply_context, normalize, to_float
from engine.model import Con2Model


def images(n: int = 40, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=generator)


def test_estimate_matches_the_batch_statistics_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = Con2Model("resnet_small", 16).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pixels = images()
    stats = batchnorm.estimate(model.encoder, pixels, context="invert", batch_size=40)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights and buffers intact
    assert not model.training
    # one batch holding every image: the first layer's mean is the plain mean of its input activations
    x = normalize(apply_context(to_float(pixels), "invert"))
    first = model.encoder.bn1
    activations = model.encoder.conv1(x)  # (N, C, H, W) before the first batch norm
    assert torch.allclose(stats["bn1.running_mean"], activations.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(stats["bn1.running_var"], activations.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4)
    assert not torch.allclose(stats["bn1.running_mean"], first.running_mean)  # not the training statistics


def test_using_swaps_statistics_inside_the_block_only():
    torch.manual_seed(0)
    model = Con2Model("resnet_small", 16).eval()
    x = normalize(to_float(images(8, seed=1)))
    own = model.features(x)
    stats = batchnorm.estimate(model.encoder, images())
    with batchnorm.using(model.encoder, stats):
        swapped = model.features(x)
    assert not torch.allclose(own, swapped)
    assert torch.equal(model.features(x), own)
    with batchnorm.using(model.encoder, None):
        assert torch.equal(model.features(x), own)
