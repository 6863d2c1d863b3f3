"""A score averaged over fixed transforms of the image: FIRM's rotation ensemble and masked contrastive
learning's self-ensemble inference (engine/firm.py, engine/masked.py).

For each rotation the training images' encoder features under it are the bank of a scorer fitted for that
rotation alone, and a query under transform t (a quarter-turn count and a left-right mirror) is scored against the
scorer of t's rotation: a rotated query is compared with rotated training images, never with upright ones, because
the methods trained the rotations apart; a mirror is a view, not a class, so it has no scorer of its own (masked
contrastive's SEI, engine/masked.py). The ensemble is the mean of the per-transform anomaly scores (FIRM) or
their harmonic mean (SEI's inverse-distance weighted average of distances).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from engine.augment import ContentAugmentation, ContentParams
from engine.embed import embed
from engine.model import Con2Model

Transform = tuple[int, bool]  # (quarter turns, mirrored left-right first)


class Scorer(Protocol):
    def fit(self, bank: torch.Tensor, copies: torch.Tensor | None = None) -> Scorer: ...

    def anomaly_scores(self, queries: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor: ...


def transformed(pixels: torch.Tensor, mirrored: bool) -> torch.Tensor:
    """uint8 images (M, C, S, S), mirrored left-right when asked; the rotation is `embed`'s to apply, after."""
    return pixels.flip(-1) if mirrored else pixels


def ensemble_scores(
    model: Con2Model,
    bank: torch.Tensor,
    queries: torch.Tensor,
    transforms: list[Transform],
    make_scorer: Callable[[], Scorer],
    *,
    params: ContentParams | None,
    augmentation: ContentAugmentation,
    batch_size: int,
    bf16: bool,
    features: str = "pooled",
    copies: torch.Tensor | None,
    exclude: torch.Tensor | None,
    reference_rows: torch.Tensor | None,
    combine: str = "mean",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean (`combine="mean"`) or harmonic mean (`"harmonic"`, for positive scores such as distances) over
    `transforms` of the per-transform anomaly scores: (M,) for the queries and, with reference_rows, (R,) for
    those bank rows scored leave-one-out (they and their copies out of their bank).

    exclude[i]: the bank row of query i when it is a training image, else −1 (engine/tta.py). One draw of T
    (params; None = none) follows the transform, for the bank and the queries alike. features: the encoder's
    "pooled" or "grid" features (`Con2Model.features`), as S_NND and S_LH use them.
    """
    if combine not in ("mean", "harmonic"):
        raise ValueError(f"unknown combination {combine!r}")
    view = {"params": params, "augmentation": augmentation, "batch_size": batch_size, "bf16": bf16}
    view["features"] = features
    # the harmonic mean sums reciprocals; a distance of exactly 0 (a query equal to the mean) would be infinite
    term = (lambda s: s.double()) if combine == "mean" else (lambda s: 1.0 / s.double().clamp_min(1e-12))
    total_queries = torch.zeros(queries.shape[0], dtype=torch.float64)
    total_reference = None if reference_rows is None else torch.zeros(len(reference_rows), dtype=torch.float64)
    # one scorer per rotation, fitted on the unmirrored training images under it; their features are kept for
    # the reference rows' unmirrored views, so those are not embedded twice
    scorers: dict[int, tuple[Scorer, torch.Tensor]] = {}
    for turns, mirrored in transforms:
        if turns not in scorers:
            features_at = embed(model, bank, quarter_turns=turns, **view)
            scorers[turns] = make_scorer().fit(features_at, copies), features_at
        scorer, bank_features = scorers[turns]
        query_features = embed(model, transformed(queries, mirrored), quarter_turns=turns, **view)
        total_queries = total_queries.to(query_features.device)
        total_queries += term(scorer.anomaly_scores(query_features, exclude))
        if total_reference is not None:
            own = (
                embed(model, transformed(bank[reference_rows], mirrored), quarter_turns=turns, **view)
                if mirrored
                else bank_features[reference_rows]
            )
            total_reference = total_reference.to(own.device)
            total_reference += term(scorer.anomaly_scores(own, reference_rows))
    if combine == "harmonic":
        return len(transforms) / total_queries, None if total_reference is None else len(transforms) / total_reference
    if total_reference is not None:
        total_reference = total_reference / len(transforms)
    return total_queries / len(transforms), total_reference
