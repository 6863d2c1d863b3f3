"""CSI: contrasting shifted instances (Tack et al., NeurIPS 2020), a peer method Con2 is measured against.

Training (CSI §2.1): each normal image x is shifted by the four rotations S_y (engine/rotations.py), and every
rotated image S_y(x) is an instance of its own. Two views T(S_y(x)), T'(S_y(x)) of each are contrasted with
NT-Xent (L_con-SI, Eq. 3): a view's one positive is the other view of the same rotated image; every other
view, the other rotations of the same x included (the "shifted instances"), is a negative. A linear head on
the encoder features predicts the rotation (L_cls-SI, Eq. 4), and L_CSI = L_con-SI + λ·L_cls-SI with λ = 1,
the paper's (Eq. 5; its code's default too).

Score (CSI §2.2, Eq. 6–8), higher = more normal:

    s_con(x; {x_m}) = max_m sim(z(x_m), z(x)) · ‖z(x)‖
    s_con-SI(x) = Σ_y λ_y^con · s_con(S_y(x); {S_y(x_m)}),   s_cls-SI(x) = Σ_y λ_y^cls · W_y f(S_y(x))

with z the unnormalised projection, sim the cosine, W_y f the rotation head's logit of rotation y, and each
λ_y = M / Σ_m (the term on training image x_m): one over the term's mean over the training set. As in the
paper, a training image's own s_con in that mean is taken against the bank that holds it (its max similarity
is 1, so s_con = ‖z(x_m)‖). The stored anomaly score is −(s_con-SI + s_cls-SI).

The assumption: an upright normal image rotated is abnormal. It is wrong for rotation-invariant data such as
cell microscopy, where a rotated cell is another normal cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.augment import ContentAugmentation, ContentParams, normalize, to_float
from engine.embed import HeadOutputs, project
from engine.losses import simclr_loss
from engine.model import Con2Model
from engine.rotations import ROTATIONS, rotated_copies
from engine.scoring import NNDScorer

SHIFT_WEIGHT = 1.0  # λ of L_CSI = L_con-SI + λ·L_cls-SI (the paper's)


def csi_views(
    pixels: torch.Tensor, augmentation: ContentAugmentation, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8N training views of N uint8 originals (N, C, S, S) and their rotation labels.

    views: (8N, 3, S, S) normalised = [T(R), T'(R)] with R = [S_0(x), S_1(x), S_2(x), S_3(x)] (4N rotated images,
    rotation-major), so rows r and r + 4N are the two views of one rotated image. labels: (8N,) quarter turns.
    Rotation comes before T, as in CSI: the shift is part of the instance, T is the view of it.
    """
    rotated, labels = rotated_copies(to_float(pixels))  # (4N, 3, S, S), (4N,)
    views = normalize(torch.cat([augmentation(rotated, generator), augmentation(rotated, generator)]))
    return views, labels.repeat(2)


def shifted_instance_loss(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """L_con-SI: NT-Xent over 2M views of M rotated images, each its own instance.

    z: (2M, P) L2-normalised, rows i and i + M the two views of rotated image i (the `csi_views` layout). The
    positive set is SimCLR's; what makes it CSI's is that the M instances include every rotation of each x.
    """
    return simclr_loss(z, temperature)


def rotation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_cls-SI: cross-entropy of the rotation head's logits (B, 4) against each view's quarter turns (B,)."""
    return F.cross_entropy(logits.float(), labels)


def csi_loss(
    z: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_CSI, L_con-SI, L_cls-SI) of one batch of `csi_views`: z (8N, P) normalised, logits (8N, 4)."""
    l_con = shifted_instance_loss(z, temperature)
    l_cls = rotation_loss(logits, labels)
    return l_con + SHIFT_WEIGHT * l_cls, l_con, l_cls


class CSIScorer:
    """CSI's score s_con-SI + s_cls-SI on head outputs under the four rotations; one view of T.

    `fit(bank, copies)` on the training images' outputs, one `HeadOutputs` per rotation (turn y at index y);
    `anomaly_scores(queries, exclude)` → (M,), **higher = more anomalous** (−s, the module docstring's s).
    exclude[i]: bank row of query i when it is a training image: it and its copies leave the max of s_con.
    """

    def fit(self, bank: list[HeadOutputs], copies: torch.Tensor | None = None) -> CSIScorer:
        if len(bank) != ROTATIONS or any(b.shift_logits is None for b in bank):
            raise ValueError("CSI scores with a model that has a rotation head, on all four rotations")
        self.nearest_ = [NNDScorer(1).fit(b.projection, copies) for b in bank]
        # λ_y: one over each term's training mean (Eq. 8); a training image's s_con against itself is ‖z‖
        self.con_weight_ = [1.0 / _nonzero(b.projection.norm(dim=1).mean()) for b in bank]
        self.cls_weight_ = [1.0 / _nonzero(b.shift_logits[:, y].mean()) for y, b in enumerate(bank)]
        return self

    def normality(self, queries: list[HeadOutputs], exclude: torch.Tensor | None = None) -> torch.Tensor:
        """s_con-SI + s_cls-SI of each query: (M,) float64, higher = more normal."""
        total = torch.zeros(queries[0].projection.shape[0], dtype=torch.float64, device=queries[0].projection.device)
        for y, q in enumerate(queries):
            sims, _ = self.nearest_[y].neighbours(q.projection, 1, exclude)  # (M, 1) max cosine similarity
            s_con = sims[:, 0].double() * q.projection.norm(dim=1).double()
            total += self.con_weight_[y] * s_con + self.cls_weight_[y] * q.shift_logits[:, y].double()
        return total

    def anomaly_scores(self, queries: list[HeadOutputs], exclude: torch.Tensor | None = None) -> torch.Tensor:
        return -self.normality(queries, exclude)


def _nonzero(mean: torch.Tensor) -> float:
    """A training mean as a divisor: a head that has barely trained can average ~0 (or below) on its correct
    class; its magnitude, at least 1e-6, keeps the weight finite and the term's sign the paper's."""
    return max(abs(float(mean)), 1e-6)


def rotated_outputs(
    model: Con2Model,
    pixels: torch.Tensor,
    *,
    params: ContentParams | None,
    augmentation: ContentAugmentation,
    batch_size: int,
    bf16: bool,
) -> list[HeadOutputs]:
    """`project` of every image under each of the four rotations, then one draw of T (None = as they are)."""
    view = {"params": params, "augmentation": augmentation, "batch_size": batch_size, "bf16": bf16}
    return [project(model, pixels, quarter_turns=y, **view) for y in range(ROTATIONS)]
