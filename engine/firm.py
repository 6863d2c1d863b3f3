"""FIRM (Lunardi et al., arXiv 2501.05130), a peer method Con2 is measured against.

Training: every normal image x gives two views T(x), T'(x); every x also gives one synthetic outlier o = S_k(x),
x rotated by k quarter turns with k drawn uniformly from {1, 2, 3} per image (engine/rotations.py), with two views
T(o), T'(o) of its own. One multi-positive contrastive loss runs over the 4N views, supervised-contrastive style:

    L = mean over anchors i of  −1/|P(i)| Σ_{p ∈ P(i)} log( exp(s_ip/τ) / Σ_{k ≠ i} exp(s_ik/τ) )

with s the cosine similarity of the content head's normalised projections. All normals share one class, so P of a
normal view is every other normal view (2N − 1 of them); an outlier is only its own instance, so P of an outlier
view is the other view of the same rotated image. Everything else is a negative: normals are pulled into one
cluster while each outlier is pushed away from them and from the other outliers.

Score: S_NND (engine/scoring.py) on the encoder features, ensembled over the four rotations: the mean over y of
the query rotated by y against the bank of the training images rotated by y (engine/ensemble.py).

The assumption: an upright normal image rotated is abnormal. It is wrong for rotation-invariant data such as
cell microscopy, where the loss would push a rotated normal cell away from the normal cells.
"""

from __future__ import annotations

import torch

from engine.augment import ContentAugmentation, normalize, to_float
from engine.ensemble import Transform
from engine.losses import per_anchor_loss
from engine.rotations import ROTATIONS, rotate

ROTATION_ENSEMBLE: list[Transform] = [(y, False) for y in range(ROTATIONS)]  # the score's four transforms


def outlier_turns(n: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """(n,) long: a quarter-turn count in {1, 2, 3} for each image, drawn uniformly (0 would be the image itself)."""
    return torch.randint(1, ROTATIONS, (n,), generator=generator, device=device)


def rotated_each(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """x: (N, C, S, S) → each image rotated by its own turns[i] quarter turns."""
    every = torch.stack([rotate(x, k) for k in range(ROTATIONS)])  # (4, N, C, S, S): cheap next to the forward
    return every[turns, torch.arange(x.shape[0], device=x.device)]


def firm_views(
    pixels: torch.Tensor, augmentation: ContentAugmentation, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4N training views of N uint8 originals (N, C, S, S) and each view's group.

    views: (4N, 3, S, S) normalised = [T(x), T(o), T'(x), T'(o)], N rows each, with o = `rotated_each` of x.
    groups: (4N,) long, 0 for every normal view, i + 1 for both views of outlier o_i: views are positives
    exactly when their groups are equal.
    """
    x = to_float(pixels)
    outliers = rotated_each(x, outlier_turns(x.shape[0], generator, x.device))
    both = torch.cat([x, outliers])
    views = normalize(torch.cat([augmentation(both, generator), augmentation(both, generator)]))
    n = x.shape[0]
    groups = torch.cat([torch.zeros(n, dtype=torch.long), torch.arange(1, n + 1)]).to(x.device)
    return views, groups.repeat(2)


def firm_loss(
    z: torch.Tensor, groups: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L, the mean over normal anchors, the mean over outlier anchors) of one batch.

    z: (B, P) L2-normalised projections; groups: (B,) as `firm_views` gives them (0 = normal). L is the mean over
    all B anchors; the two parts are reported apart so the loss history shows which side is learnt.
    """
    per_anchor = per_anchor_loss(z, groups[:, None] == groups[None, :], temperature)
    normal = groups == 0
    return per_anchor.mean(), per_anchor[normal].mean(), per_anchor[~normal].mean()
