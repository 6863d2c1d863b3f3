"""Masked contrastive learning (engine/masked.py): the class-conditional masked NT-Xent against a loop written from
its equation, the rotation term, the chance level, gradients, self-ensemble inference against a loop of harmonic
means of Mahalanobis distances, a tiny run on the digits and the bundle round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from peer_runs import (
    assert_bundle_scores_as_the_original,
    assert_gradients_reach_the_rotation_head,
    assert_trained_and_scored_finitely,
    tiny_digits_run,
)

from dashboard.charts import content_chance
from engine import masked
from engine.augment import ContentAugmentation
from engine.embed import embed
from engine.ensemble import ensemble_scores
from engine.losses import simclr_loss
from engine.model import Con2Model


def masked_loop(z: torch.Tensor, labels: list[int], tau: float, alpha: float, beta: float) -> float:
    """mean_i −log(exp(s_ij/τ) / Σ_{k≠i} exp(c_ik·s_ik)), j the other view of i's rotated image, c_ij = 1/τ,
    c_ik = α for another image at i's rotation, β for a view at another rotation."""
    z = z.double()
    b, losses = z.shape[0], []
    for i in range(b):
        j = (i + b // 2) % b
        denominator = 0.0
        for k in range(b):
            if k != i:
                c = 1 / tau if k == j else alpha if labels[k] == labels[i] else beta
                denominator += math.exp(c * float(z[i] @ z[k]))
        losses.append(-math.log(math.exp(float(z[i] @ z[j]) / tau) / denominator))
    return sum(losses) / len(losses)


LAYOUT = [k for _ in range(2) for k in range(4) for _ in range(2)]  # csi_views' pseudo-classes, N = 2


@pytest.mark.parametrize(("alpha", "beta"), [(0.05, 2.0), (1.0, 3.0)])
def test_the_masked_nt_xent_scales_each_pair_by_its_rotation(alpha, beta):
    torch.manual_seed(0)
    n, tau = 2, 0.4
    z = F.normalize(torch.randn(8 * n, 5), dim=1)
    labels = torch.tensor([k for _ in range(2) for k in range(4) for _ in range(n)])  # the csi_views layout
    assert float(masked.masked_nt_xent(z, labels, tau, alpha, beta)) == pytest.approx(
        masked_loop(z, labels.tolist(), tau, alpha, beta), rel=1e-5
    )


def test_with_every_scale_one_over_tau_it_is_nt_xent():
    torch.manual_seed(1)
    z = F.normalize(torch.randn(16, 5), dim=1)
    labels = torch.tensor(LAYOUT)
    assert float(masked.masked_nt_xent(z, labels, 0.5, 2.0, 2.0)) == pytest.approx(float(simclr_loss(z, 0.5)), rel=1e-6)
    assert (masked.SAME_ROTATION_SCALE, masked.OTHER_ROTATION_SCALE) == (0.05, 2.0)  # the authors' defaults


def test_the_total_adds_the_rotation_cross_entropy_with_weight_one():
    torch.manual_seed(2)
    z = F.normalize(torch.randn(16, 4), dim=1)
    logits, labels = torch.randn(16, 4), torch.tensor([k for _ in range(2) for k in range(4) for _ in range(2)])
    expected_ce = 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        expected_ce += -(row[label] - math.log(sum(math.exp(v) for v in row))) / 16
    total, l_con, l_cls = masked.masked_loss(z, logits, labels, 0.5)
    assert float(l_cls) == pytest.approx(expected_ce, rel=1e-5)
    assert float(l_con) == pytest.approx(masked_loop(z, labels.tolist(), 0.5, 0.05, 2.0), rel=1e-5)
    assert float(total) == pytest.approx(float(l_con) + float(l_cls), rel=1e-6) and masked.ROTATION_WEIGHT == 1.0


def test_a_head_that_tells_nothing_apart_sits_at_the_chance_level():
    n = 3
    z = torch.eye(8 * n)  # every similarity 0: the scales multiply nothing, every view equally like the anchor
    labels = torch.tensor([k for _ in range(2) for k in range(4) for _ in range(n)])
    # the level the Train page draws under the loss curve
    chance = content_chance({"method": "masked_contrastive", "batch_size": n})
    assert float(masked.masked_nt_xent(z, labels, 0.2)) == pytest.approx(chance, rel=1e-5)


def test_gradients_reach_the_encoder_the_content_head_and_the_rotation_head():
    assert_gradients_reach_the_rotation_head("masked_contrastive", seed=3)


def mahalanobis(bank: np.ndarray, query: np.ndarray, epsilon: float) -> float:
    """√((q − μ)ᵀ(S + εI)⁻¹(q − μ)) of the L2-normalised features, S the maximum-likelihood covariance."""
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = query / np.linalg.norm(query)
    mu = b.mean(axis=0)
    sigma = (b - mu).T @ (b - mu) / len(b) + epsilon * np.eye(b.shape[1])
    return math.sqrt(float((q - mu) @ np.linalg.solve(sigma, q - mu)))


def test_self_ensemble_inference_is_the_harmonic_mean_of_distances_to_each_rotations_gaussian():
    torch.manual_seed(4)
    model = Con2Model("resnet_small", 8, 8, shift_classes=4).eval()
    bank = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    queries = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    assert len(masked.SELF_ENSEMBLE) == 8 and len(set(masked.SELF_ENSEMBLE)) == 8
    identity = ContentAugmentation(8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0,
                                   grey_p=0.0, blur_p=0.0)  # fmt: skip
    scores, reference = ensemble_scores(
        model, bank, queries, masked.SELF_ENSEMBLE, lambda: masked.MahalanobisScorer("fixed", 1e-2), params=None,
        augmentation=identity, batch_size=4, bf16=False, features="pooled", copies=None, exclude=None,
        reference_rows=torch.tensor([0, 3]), combine="harmonic",
    )  # fmt: skip
    inverse = [0.0] * 3
    inverse_reference = [0.0] * 2
    for mirrored in (False, True):
        for y in range(4):
            fb = embed(model, bank, quarter_turns=y).double().numpy()  # a mirror is scored against its rotation's
            q = queries.flip(-1) if mirrored else queries
            fq = embed(model, q, quarter_turns=y).double().numpy()
            for i in range(3):
                inverse[i] += 1 / mahalanobis(fb, fq[i], 1e-2)
            own = embed(model, bank.flip(-1) if mirrored else bank, quarter_turns=y).double().numpy()
            for r, row in enumerate((0, 3)):  # leave-one-out: the training image out of its own Gaussian
                inverse_reference[r] += 1 / mahalanobis(np.delete(fb, row, axis=0), own[row], 1e-2)
    assert np.allclose(scores.numpy(), [8 / v for v in inverse], rtol=1e-6)
    assert np.allclose(reference.numpy(), [8 / v for v in inverse_reference], rtol=1e-6)


@pytest.fixture(scope="module")
def digits_masked():
    return tiny_digits_run("masked_contrastive", normal="8")  # the demo's 0 is perfect even for raw pixels


def test_a_tiny_run_on_the_digits_ranks_the_other_digits_above_the_eights(digits_masked):
    assert_trained_and_scored_finitely(digits_masked)
    assert len(digits_masked.scores.train_s_nnd) == 50
    assert digits_masked.metrics["auroc_nnd"] >= 0.85  # measured 0.958 (seed 2, one epoch, grid features, SEI)


def test_the_bundle_keeps_the_rotation_head_and_scores_as_the_original(digits_masked):
    back = assert_bundle_scores_as_the_original(digits_masked)
    theirs, ours = back.trained.model.state_dict(), digits_masked.trained.model.state_dict()
    assert "shift_head.weight" in theirs and list(theirs) == list(ours)
    assert all(torch.equal(theirs[k].cpu(), ours[k].cpu()) for k in ours)
