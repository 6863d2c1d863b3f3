"""Masked contrastive learning (MCL; Cho, Seol & Lee, IJCAI 2021), adapted to one class: a peer method Con2 is
measured against.

The labelled original contrasts two views of each image with NT-Xent, but its class-conditional mask (CCM)
changes how hard a negative is repelled by its class: a negative of the anchor's own class is repelled less than
one of another class, so each class forms a dense cluster while the images in it stay apart. With one normal
class there are no labels to condition on, so the four rotations S_y of each image (engine/rotations.py) are the
pseudo-classes, as the paper's own shifting self-supervision makes them. Our reading of the mask, for anchor i
and another view k:

    L_mcl = mean_i −log( exp(s_ij/τ) / Σ_{k ≠ i} w_ik · exp(s_ik/τ) ),   w_ik = ρ if rot(k) = rot(i) and k ≠ j,
                                                                          w_ik = 1 otherwise,

j the other view of the same rotated image. The paper tunes how strongly the same-class negatives are masked; we
fix ρ = SAME_CLASS_WEIGHT = 0.5 (half the repulsion), not a value taken from it. Its stochastic positive
attraction (same-class images sometimes drawn as extra positives) is left out: with rotations as classes it
would pull different normal images together, which is FIRM's loss, not this one. As in the paper's
self-supervised setting, a linear head predicts the rotation (cross-entropy, weight ROTATION_WEIGHT = 1), so the
method trains like CSI (the same 8N views, engine/csi.py) with the mask in place of CSI's plain NT-Xent.

Score, self-ensemble inference (SEI): the paper averages, over its self-supervision transforms, how well the
transformed input fits the label the transform implies. Without classes or a fitted classifier our reading is:
for each of the 8 transforms t (4 rotations × with/without a left-right mirror) a Gaussian of the training
images' L2-normalised encoder features under t (their mean, a Ledoit–Wolf shrunk covariance: S_LH's, engine/
scoring.py), and the anomaly score is the mean over t of the query's negative log-likelihood under t's Gaussian,
i.e. half its Mahalanobis distance² plus a constant per t. Inverse-distance weighting across transforms is not
used: a plain mean keeps each transform's say equal.

The assumption: an upright normal image rotated is abnormal (a rotation is another class). It is wrong for
rotation-invariant data such as cell microscopy.
"""

from __future__ import annotations

import math

import torch

from engine.config import MASKED_SAME_CLASS_WEIGHT
from engine.csi import rotation_loss
from engine.device import without_autocast
from engine.ensemble import Transform
from engine.rotations import ROTATIONS

SAME_CLASS_WEIGHT = MASKED_SAME_CLASS_WEIGHT  # ρ: the share of the usual repulsion a same-rotation negative keeps
ROTATION_WEIGHT = 1.0  # weight of the rotation cross-entropy
SELF_ENSEMBLE: list[Transform] = [(y, mirrored) for mirrored in (False, True) for y in range(ROTATIONS)]


def masked_nt_xent(z: torch.Tensor, labels: torch.Tensor, temperature: float, weight: float) -> torch.Tensor:
    """L_mcl over 2M views: z (2M, P) L2-normalised, rows i and i + M the two views of one rotated image (the
    `csi.csi_views` layout); labels (2M,) each view's pseudo-class (its quarter turns); weight: ρ."""
    m2 = z.shape[0]
    rows = torch.arange(m2, device=z.device)
    partner = (rows + m2 // 2) % m2
    with without_autocast(z.device):  # exp(s/τ) needs float32's precision (engine/losses.py)
        logits = (z.float() @ z.float().T) / temperature
    same_class = (labels[:, None] == labels[None, :]) & (rows[None, :] != partner[:, None])
    log_rho = math.log(weight) if weight > 0 else float("-inf")  # ρ = 0: those negatives masked out entirely
    log_weight = torch.zeros_like(logits).masked_fill(same_class, log_rho)
    log_weight = log_weight.masked_fill(torch.eye(m2, dtype=torch.bool, device=z.device), float("-inf"))
    denominator = torch.logsumexp(logits + log_weight, dim=1)
    return (denominator - logits[rows, partner]).mean()


def masked_loss(
    z: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_mcl + 1·rotation CE, L_mcl, rotation CE) of one batch of `csi.csi_views`: z (8N, P), logits (8N, 4)."""
    l_con = masked_nt_xent(z, labels, temperature, SAME_CLASS_WEIGHT)
    l_cls = rotation_loss(logits, labels)
    return l_con + ROTATION_WEIGHT * l_cls, l_con, l_cls
