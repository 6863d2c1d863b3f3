"""Encoder features (or head outputs) of many images under one fixed view: a context or a rotation (or
neither) and one draw of T."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from engine.augment import ContentAugmentation, ContentParams, apply_context, normalize, to_float
from engine.device import BatchFeed, autocast
from engine.model import Con2Model
from engine.rotations import rotate


@torch.no_grad()
def embed(
    model: Con2Model,
    pixels: torch.Tensor,
    *,
    context: str | None = None,
    params: ContentParams | None = None,
    augmentation: ContentAugmentation | None = None,
    batch_size: int = 256,
    bf16: bool = False,
    features: str = "pooled",
    quarter_turns: int = 0,
) -> torch.Tensor:
    """Features g_θ(t(x)) (or g_θ(t(t_c(x))) with a context) of every image, on the model's device.

    pixels: (M, C, S, S) uint8 on any device. params: a single draw of T (batch 1), applied
    identically to every image so that queries and bank see the same t (Eq. 12); None = the plain
    image. features: "pooled" (the paper's) or "grid" (`Con2Model.features`). quarter_turns: the image rotated
    by that many 90° turns first (engine/rotations.py), before T. Returns (M, D) float32.
    The model must be in eval mode (batch-norm statistics fixed). With bf16 (the run's precision,
    engine.device.runs_in_bfloat16) the forward pass runs in bfloat16; the view is built in float32 before it.
    """
    device = next(model.parameters()).device
    out = []
    for x in _views(model, pixels, context, quarter_turns, params, augmentation, batch_size):
        with autocast(device, bf16):
            out.append(model.features(x, features).float())
    if not out:
        return torch.empty(0, model.feature_size(features), device=device)
    return torch.cat(out)


def _views(
    model: Con2Model,
    pixels: torch.Tensor,
    context: str | None,
    quarter_turns: int,
    params: ContentParams | None,
    augmentation: ContentAugmentation | None,
    batch_size: int,
) -> Iterator[torch.Tensor]:
    """Batches (B, 3, S, S) of one view of the images, normalised, on the model's device: the context or the
    rotation first, then the draw of T."""
    device = next(model.parameters()).device
    if params is not None and augmentation is None:
        raise ValueError("params need the augmentation that drew them")
    feed = BatchFeed(pixels, device)
    for start in range(0, pixels.shape[0], batch_size):
        x = to_float(feed.take(slice(start, start + batch_size)))
        if context is not None:
            x = apply_context(x, context)
        if quarter_turns:
            x = rotate(x, quarter_turns)
        if params is not None:
            x = augmentation.apply(x, params.expand(x.shape[0]))
        yield normalize(x).contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class HeadOutputs:
    """The content head's projection and the rotation head's logits of many images under one view."""

    projection: torch.Tensor  # (M, P) h_ψ(g_θ(x)) before normalisation: CSI and self-OECL score with its norm
    shift_logits: torch.Tensor | None  # (M, 4), None for a model without a rotation head


@torch.no_grad()
def project(
    model: Con2Model,
    pixels: torch.Tensor,
    *,
    quarter_turns: int = 0,
    params: ContentParams | None = None,
    augmentation: ContentAugmentation | None = None,
    batch_size: int = 256,
    bf16: bool = False,
) -> HeadOutputs:
    """The heads' outputs for (M, C, S, S) uint8 images rotated by quarter_turns × 90°, then under one draw of T
    (None = as they are); float32, on the model's device. The model must be in eval mode."""
    device = next(model.parameters()).device
    raw, logits = [], []
    for x in _views(model, pixels, None, quarter_turns, params, augmentation, batch_size):
        with autocast(device, bf16):
            out = model(x)
        raw.append(out.content_raw.float())
        if out.shift_logits is not None:
            logits.append(out.shift_logits.float())
    if not raw:
        p = model.content_head.net[-1].out_features
        return HeadOutputs(torch.empty(0, p, device=device), None)
    return HeadOutputs(torch.cat(raw), torch.cat(logits) if logits else None)
