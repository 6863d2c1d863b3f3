"""Batch-norm statistics re-estimated for the images being scored, one set per context.

During training every batch-norm layer sees a mix of 4N views: originals and context images (inverted,
mirrored or equalised), all cropped and colour-jittered. Its running mean and variance describe that mix,
which is neither the plain images a bank holds nor their context images. Scoring normalises activations with
those mixed statistics, which shifts and scales the features that S_NND and S_LH compare. Re-estimating the
statistics on the training images themselves (a forward pass in train mode, no gradient, weights untouched),
once on the plain images and once on their context images, gives each half of the test-time augmentation
the statistics of what it actually embeds. docs/quality.md has the measurement that justified it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from engine.augment import apply_context, normalize, to_float
from engine.device import BatchFeed

Statistics = dict[str, torch.Tensor]  # "<module name>.running_mean" / ".running_var" → tensor


def _layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _read(model: nn.Module) -> Statistics:
    return {f"{name}.{b}": getattr(layer, b).clone() for name, layer in _layers(model) for b in BUFFERS}


def _write(model: nn.Module, stats: Statistics) -> None:
    for name, layer in _layers(model):
        for b in BUFFERS:
            getattr(layer, b).copy_(stats[f"{name}.{b}"])


@torch.no_grad()
def estimate(
    encoder: nn.Module, pixels: torch.Tensor, *, context: str | None = None, batch_size: int = 256
) -> Statistics:
    """Batch-norm statistics of `encoder` on these images (plain, or their context images).

    pixels: (N, C, S, S) uint8. Each statistic is the average of its per-batch values over batches of
    `batch_size` images. The encoder's weights and its own statistics are left as they were.
    """
    feed = BatchFeed(pixels, next(encoder.parameters()).device)
    saved = _read(encoder)
    momenta = {name: layer.momentum for name, layer in _layers(encoder)}
    was_training = encoder.training
    try:
        for _, layer in _layers(encoder):
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative average over batches, independent of their order
        encoder.train()
        for start in range(0, pixels.shape[0], batch_size):
            batch = feed.take(slice(start, start + batch_size))
            if batch.shape[0] < 2:  # a batch of one has no variance to add
                continue
            x = to_float(batch)
            if context is not None:
                x = apply_context(x, context)
            encoder(normalize(x).contiguous(memory_format=torch.channels_last))
        return _read(encoder)
    finally:
        _write(encoder, saved)
        for name, layer in _layers(encoder):
            layer.momentum = momenta[name]
        encoder.train(was_training)


@contextmanager
def using(encoder: nn.Module, stats: Statistics | None) -> Iterator[None]:
    """Run the encoder with these statistics inside the block, and with its own after it (None: its own)."""
    if stats is None:
        yield
        return
    saved = _read(encoder)
    _write(encoder, stats)
    try:
        yield
    finally:
        _write(encoder, saved)
