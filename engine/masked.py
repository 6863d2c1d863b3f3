"""Masked contrastive learning (MCL; Cho, Seol & Lee, IJCAI 2021), adapted to one class: a peer method Con2 is
measured against.

The labelled original contrasts two views of each image with NT-Xent, but its class-conditional mask (CCM)
gives every pair its own logit scale instead of one temperature: the anchor's positive (the other view of its
image) and negatives of other classes get 1/τ, negatives of its own class at another rotation β = 2, and
negatives of its own class and rotation α = 0.05 (the authors' code, `nt_xent_CCM`, and its defaults α = 0.05,
β = 2, τ = 0.2). With one normal class every image is of the anchor's class, so for anchor i and another view k

    L_mcl = mean_i −log( exp(s_ij/τ) / Σ_{k ≠ i} exp(c_ik · s_ik) ),   c_ij = 1/τ,
            c_ik = α if rot(k) = rot(i) (another image), c_ik = β otherwise,

j the other view of the same rotated image, s the cosine similarity: other normal images at the anchor's
rotation are hardly repelled at all, the rotated ones mildly. Departures: the authors clamp s at 1e−7 before
scaling (we do not: it only changes negative similarities); their stochastic positive attraction (a same-class
image drawn as an extra positive) is left out: with one class it would pull different normal images together,
which is FIRM's loss, not this one. As in the paper's self-supervised setting a linear head predicts the
rotation (cross-entropy, weight ROTATION_WEIGHT = 1), so the method trains like CSI (the same 8N views,
engine/csi.py) with the masked loss in place of CSI's plain NT-Xent.

Score, self-ensemble inference (SEI; the authors' default "wa" over 8 ways): a Gaussian of the training images'
features for each rotation, and for a query the Mahalanobis distance d_t of each of its 8 transforms t (4
rotations × with/without a left-right mirror) to the Gaussian of t's rotation (a mirrored view has no Gaussian of
its own). Their weighted average with weights 1/d_t, Σ_t (1/d_t)·d_t / Σ_t (1/d_t) = 8 / Σ_t (1/d_t), is the
harmonic mean of the distances: the anomaly score (with one class their minimum over classes is that one).
Departures: the features are the encoder's (`ScoreConfig.features`, as every score here) where the authors use
the normalised projection, and the covariance is S_LH's Ledoit–Wolf estimate (engine/scoring.py) where they add
a 10⁻⁹ ridge to the sample covariance, which is singular when there are fewer training images than dimensions.

The assumption: an upright normal image rotated is abnormal (a rotation is another class). It is wrong for
rotation-invariant data such as cell microscopy.
"""

from __future__ import annotations

import torch

from engine.csi import rotation_loss
from engine.device import without_autocast
from engine.ensemble import Transform
from engine.rotations import ROTATIONS
from engine.scoring import LHScorer

SAME_ROTATION_SCALE = 0.05  # α: the logit scale of a negative of the anchor's own rotation (the authors' default)
OTHER_ROTATION_SCALE = 2.0  # β: the logit scale of a negative at another rotation (the authors' default)
ROTATION_WEIGHT = 1.0  # weight of the rotation cross-entropy
SELF_ENSEMBLE: list[Transform] = [(y, mirrored) for mirrored in (False, True) for y in range(ROTATIONS)]


def masked_nt_xent(
    z: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    same: float = SAME_ROTATION_SCALE,
    other: float = OTHER_ROTATION_SCALE,
) -> torch.Tensor:
    """L_mcl over 2M views: z (2M, P) L2-normalised, rows i and i + M the two views of one rotated image (the
    `csi.csi_views` layout); labels (2M,) each view's pseudo-class (its quarter turns); same, other: α, β."""
    m2 = z.shape[0]
    rows = torch.arange(m2, device=z.device)
    partner = (rows + m2 // 2) % m2
    with without_autocast(z.device):  # exp needs float32's precision (engine/losses.py)
        similarity = z.float() @ z.float().T
    scale = torch.where(labels[:, None] == labels[None, :], same, other).to(similarity)
    scale[rows, partner] = 1.0 / temperature
    logits = (similarity * scale).masked_fill(torch.eye(m2, dtype=torch.bool, device=z.device), float("-inf"))
    return (torch.logsumexp(logits, dim=1) - logits[rows, partner]).mean()


class MahalanobisScorer(LHScorer):
    """The Mahalanobis distance (not squared) of L2-normalised features to S_LH's Gaussian (its shrunk
    covariance, its exact leave-one-out for training images): SEI's per-transform term."""

    def _nll(self, maha: torch.Tensor, logdet: torch.Tensor | float) -> torch.Tensor:
        return maha.clamp_min(0).sqrt()


def masked_loss(
    z: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_mcl + 1·rotation CE, L_mcl, rotation CE) of one batch of `csi.csi_views`: z (8N, P), logits (8N, 4)."""
    l_con = masked_nt_xent(z, labels, temperature)
    l_cls = rotation_loss(logits, labels)
    return l_con + ROTATION_WEIGHT * l_cls, l_con, l_cls
