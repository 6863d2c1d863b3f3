"""self-OECL: outlier exposure contrastive learning without outside data (Le-Gia & Ahn, arXiv 2312.15288), a peer
method Con2 is measured against.

The paper's observation: a contrastive projection's ℓ2 norm (before normalisation) is larger on the images
the head was trained on than on unfamiliar ones. OECL makes that a training signal,

    L_oecl = L_contrastive(z) + α · E_{x ∈ D_oe, t ∈ T_oe} ‖f(t(x))‖₂,

and self-OECL makes its own outliers D_oe by rotating the normal images: the images rotated by 0° and 90° are
the normal instances (each rotation an instance of its own, two views of each, NT-Xent as in SimCLR), the same
images rotated by 180° and 270° are the outliers whose unnormalised projection f = h_ψ(g_θ(·)) the penalty
shrinks. The penalty is off for the first `WARMUP_FRACTION` of the steps (the authors' code: 50 of 1000 epochs),
so the contrastive features form first, then α = 1 (their code's value for self-OECL).

Score: the ℓ2 norm of the mean unnormalised projection over a sample's test-time views, ‖E_t f(t(x))‖₂, higher =
more normal; the stored anomaly score is its negative. It needs no training bank.

The assumption: an upright normal image rotated by 180° or 270° is abnormal. It is wrong for rotation-invariant
data such as cell microscopy, where the penalty would push normal images' norms down too.
"""

from __future__ import annotations

import torch

from engine.augment import ContentAugmentation, normalize, to_float
from engine.losses import simclr_loss
from engine.rotations import rotated_copies

NORMAL_TURNS = (0, 1)  # 0° and 90°: the normal instances
OUTLIER_TURNS = (2, 3)  # 180° and 270°: the self-made outliers
NORM_WEIGHT = 1.0  # α after the warm-up
WARMUP_FRACTION = 0.05  # share of the steps trained without the penalty


def oecl_views(pixels: torch.Tensor, augmentation: ContentAugmentation, generator: torch.Generator) -> torch.Tensor:
    """The 8N training views of N uint8 originals (N, C, S, S): (8N, 3, S, S) normalised.

    rows [0, 4N): two views [T(R), T'(R)] of the normal instances R = [S_0(x), S_1(x)] (2N, rotation-major), so
    rows r and r + 2N are the two views of one instance; rows [4N, 8N): two views of the outliers [S_2(x), S_3(x)].
    """
    x = to_float(pixels)
    normal, _ = rotated_copies(x, NORMAL_TURNS)
    outliers, _ = rotated_copies(x, OUTLIER_TURNS)
    views = [augmentation(normal, generator), augmentation(normal, generator)]
    views += [augmentation(outliers, generator), augmentation(outliers, generator)]
    return normalize(torch.cat(views))


def norm_penalty(projection: torch.Tensor) -> torch.Tensor:
    """E ‖f‖₂ over the outliers' unnormalised projections (B, P): the term whose gradient shrinks their norm."""
    return projection.float().norm(dim=1).mean()


def norm_weight(progress: float) -> float:
    """α at `progress` (steps done / total steps): 0 during the warm-up, then NORM_WEIGHT."""
    return 0.0 if progress < WARMUP_FRACTION else NORM_WEIGHT


def oecl_loss(
    z: torch.Tensor, projection: torch.Tensor, temperature: float, weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_oecl, NT-Xent, norm penalty) of one batch of `oecl_views`.

    z: (8N, P) normalised projections of every view; projection: (8N, P) the same before normalisation. Only the
    first 4N rows (the normal instances) enter NT-Xent, and only the last 4N (the outliers) the penalty: the
    outliers are neither anchors nor negatives, as in the authors' code.
    """
    half = z.shape[0] // 2
    l_con = simclr_loss(z[:half], temperature)
    l_norm = norm_penalty(projection[half:])
    return l_con + weight * l_norm, l_con, l_norm


def norm_normality(projections: list[torch.Tensor]) -> torch.Tensor:
    """‖mean over views of f‖₂ of each image: one (M, P) unnormalised projection per view → (M,), higher = normal."""
    return torch.stack([p.double() for p in projections]).mean(dim=0).norm(dim=1)
