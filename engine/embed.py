"""Encoder features of many images under one fixed view: a context (or none) and one draw of T."""

from __future__ import annotations

import torch

from engine.augment import ContentAugmentation, ContentParams, apply_context, normalize, to_float
from engine.device import BatchFeed, autocast
from engine.model import Con2Model


@torch.no_grad()
def embed(
    model: Con2Model,
    pixels: torch.Tensor,
    *,
    context: str | None = None,
    params: ContentParams | None = None,
    augmentation: ContentAugmentation | None = None,
    batch_size: int = 256,
    amp: bool = False,
    features: str = "pooled",
) -> torch.Tensor:
    """Features g_θ(t(x)) (or g_θ(t(t_c(x))) with a context) of every image, on the model's device.

    pixels: (M, C, S, S) uint8 on any device. params: a single draw of T (batch 1), applied
    identically to every image so that queries and bank see the same t (Eq. 12); None = the plain
    image. features: "pooled" (the paper's) or "grid" (`Con2Model.features`). Returns (M, D) float32.
    The model must be in eval mode (batch-norm statistics fixed). With amp on CUDA the forward pass runs
    in bfloat16 (engine.device); the view is built in float32 before it.
    """
    device = next(model.parameters()).device
    if params is not None and augmentation is None:
        raise ValueError("params need the augmentation that drew them")
    feed = BatchFeed(pixels, device)
    out = []
    for start in range(0, pixels.shape[0], batch_size):
        x = to_float(feed.take(slice(start, start + batch_size)))
        if context is not None:
            x = apply_context(x, context)
        if params is not None:
            x = augmentation.apply(x, params.expand(x.shape[0]))
        x = normalize(x).contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            out.append(model.features(x, features).float())
    if not out:
        return torch.empty(0, model.feature_size(features), device=device)
    return torch.cat(out)
