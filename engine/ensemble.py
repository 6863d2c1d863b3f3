"""A score averaged over fixed transforms of the image: FIRM's rotation ensemble and masked contrastive
learning's self-ensemble inference (engine/firm.py, engine/masked.py).

For each transform t (a quarter-turn count and a horizontal mirror) the training images' encoder features under
t are the bank of a scorer fitted for t alone, and the queries under t are scored against it: a rotated query is
compared with rotated training images, never with upright ones, because the methods trained the rotations apart.
The ensemble is the mean of the per-transform anomaly scores.
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
    amp: bool,
    features: str = "pooled",
    copies: torch.Tensor | None,
    exclude: torch.Tensor | None,
    reference_rows: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean over `transforms` of the per-transform anomaly scores: (M,) for the queries and, with
    reference_rows, (R,) for those bank rows scored leave-one-out (they and their copies out of their bank).

    exclude[i]: the bank row of query i when it is a training image, else −1 (engine/tta.py). One draw of T
    (params; None = none) follows the transform, for the bank and the queries alike. features: the encoder's
    "pooled" or "grid" features (`Con2Model.features`), as S_NND and S_LH use them.
    """
    view = {"params": params, "augmentation": augmentation, "batch_size": batch_size, "amp": amp, "features": features}
    total_queries = torch.zeros(queries.shape[0], dtype=torch.float64)
    total_reference = None if reference_rows is None else torch.zeros(len(reference_rows), dtype=torch.float64)
    for turns, mirrored in transforms:
        bank_features = embed(model, transformed(bank, mirrored), quarter_turns=turns, **view)
        scorer = make_scorer().fit(bank_features, copies)
        query_features = embed(model, transformed(queries, mirrored), quarter_turns=turns, **view)
        total_queries = total_queries.to(query_features.device)
        total_queries += scorer.anomaly_scores(query_features, exclude).double()
        if total_reference is not None:
            total_reference = total_reference.to(bank_features.device)
            total_reference += scorer.anomaly_scores(bank_features[reference_rows], reference_rows).double()
    if total_reference is not None:
        total_reference = total_reference / len(transforms)
    return total_queries / len(transforms), total_reference
