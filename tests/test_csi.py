"""CSI (engine/csi.py): its views, both losses against loops written from the paper's equations, gradients,
the score against a loop of Eq. 6–8, a tiny run on the digits and the bundle round trip."""

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

from engine import csi
from engine.augment import ContentAugmentation, normalize, to_float
from engine.embed import HeadOutputs
from engine.model import Con2Model
from engine.rotations import rotate


def nt_xent_loop(z: torch.Tensor, instance: list, tau: float) -> float:
    """NT-Xent straight from its definition: every anchor's one positive is the other view of its instance, the
    denominator every other view."""
    z = z.double()
    m, losses = z.shape[0], []
    for i in range(m):
        for j in range(m):
            if j != i and instance[j] == instance[i]:
                numerator = math.exp(float(z[i] @ z[j]) / tau)
                denominator = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(m) if k != i)
                losses.append(-math.log(numerator / denominator))
    return sum(losses) / len(losses)


def test_the_shifted_instance_loss_treats_each_rotation_as_its_own_instance():
    n, tau = 3, 0.3
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(8 * n, 5, generator=g), dim=1)
    # csi_views' layout, spelled out: (view, rotation, image) for each row; the other rotations of an image are
    # other instances, so negatives
    rows = [(v, k, i) for v in range(2) for k in range(4) for i in range(n)]
    expected = nt_xent_loop(z, [(k, i) for _, k, i in rows], tau)
    assert float(csi.shifted_instance_loss(z, tau)) == pytest.approx(expected, rel=1e-5)


def test_the_rotation_loss_is_the_cross_entropy_of_the_true_turn_and_csi_adds_it_with_weight_one():
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(16, 4, generator=g), torch.randint(0, 4, (16,), generator=g)
    expected = 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        expected += -(row[label] - math.log(sum(math.exp(v) for v in row))) / 16
    assert float(csi.rotation_loss(logits, labels)) == pytest.approx(expected, rel=1e-5)
    z = F.normalize(torch.randn(16, 4, generator=g), dim=1)
    total, l_con, l_cls = csi.csi_loss(z, logits, labels, 0.5)
    assert float(total) == pytest.approx(float(l_con) + csi.SHIFT_WEIGHT * float(l_cls), rel=1e-6)
    assert csi.SHIFT_WEIGHT == 1.0  # the paper's λ


def test_views_are_both_views_of_each_rotation_with_their_labels():
    g = torch.Generator().manual_seed(2)
    pixels = torch.randint(0, 256, (3, 1, 8, 8), generator=g, dtype=torch.uint8)
    # T reduced to the identity: the views must then be the rotated images themselves, in the documented layout
    identity = ContentAugmentation(8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0,
                                   grey_p=0.0, blur_p=0.0)  # fmt: skip
    views, labels = csi.csi_views(pixels, identity, torch.Generator().manual_seed(0))
    assert views.shape == (24, 3, 8, 8) and labels.tolist() == [k for _ in range(2) for k in range(4) for _ in range(3)]
    x = to_float(pixels)
    for v in range(2):
        for k in range(4):
            for i in range(3):
                expected = normalize(rotate(x[i : i + 1], k))[0]
                assert torch.allclose(views[v * 12 + k * 3 + i], expected, atol=1e-5)


def test_gradients_reach_the_encoder_the_content_head_and_the_rotation_head():
    assert_gradients_reach_the_rotation_head("csi", seed=0)


def csi_score_loop(bank: list[HeadOutputs], queries: list[HeadOutputs], exclude: list[int]) -> list[float]:
    """s_con-SI + s_cls-SI (CSI Eq. 6–8) with loops: per rotation, max cosine × ‖z‖ and the true logit, each
    weighted by one over its training mean (a training image's s_con against its own bank = ‖z‖)."""
    scores = []
    for q in range(queries[0].projection.shape[0]):
        total = 0.0
        for y in range(4):
            b, z = bank[y].projection.double(), queries[y].projection[q].double()
            norms = [float(b[m].norm()) for m in range(b.shape[0])]
            cosines = [float(z @ b[m]) / (float(z.norm()) * norms[m]) for m in range(b.shape[0]) if m != exclude[q]]
            con_weight = len(norms) / sum(norms)
            cls_weight = b.shape[0] / float(bank[y].shift_logits[:, y].double().sum())
            total += con_weight * max(cosines) * float(z.norm()) + cls_weight * float(queries[y].shift_logits[q, y])
        scores.append(total)
    return scores


def outputs(g: torch.Generator, n: int, direction: torch.Tensor, norm: float, logit: float) -> list[HeadOutputs]:
    """Constructed head outputs per rotation: projections near `direction` with length ~norm, true logit ~logit."""
    out = []
    for y in range(4):
        proj = direction + 0.2 * torch.randn(n, direction.shape[0], generator=g)
        proj = F.normalize(proj, dim=1) * (norm + 0.1 * torch.rand(n, 1, generator=g))
        logits = torch.randn(n, 4, generator=g)
        logits[:, y] = logit + 0.1 * torch.randn(n, generator=g)
        out.append(HeadOutputs(proj, logits))
    return out


def test_the_score_is_eq_6_to_8_and_ranks_an_obvious_outlier_last():
    g = torch.Generator().manual_seed(4)
    normal_direction = F.normalize(torch.randn(6, generator=g), dim=0)
    bank = outputs(g, 20, normal_direction, 5.0, 4.0)
    normals = outputs(g, 5, normal_direction, 5.0, 4.0)
    outlier = outputs(g, 1, -normal_direction, 1.0, -1.0)  # elsewhere, short, rotation head unsure
    queries = [HeadOutputs(torch.cat([a.projection, b.projection]), torch.cat([a.shift_logits, b.shift_logits]))
               for a, b in zip(normals, outlier, strict=True)]  # fmt: skip
    scorer = csi.CSIScorer().fit(bank)
    scores = scorer.anomaly_scores(queries)
    assert np.allclose(-scores.numpy(), csi_score_loop(bank, queries, [-1] * 6), rtol=1e-6)
    assert int(scores.argmax()) == 5
    # leave-one-out: a training image scored against its own bank leaves itself out of the max
    own = scorer.anomaly_scores(bank, torch.arange(20))
    assert np.allclose(-own.numpy(), csi_score_loop(bank, bank, list(range(20))), rtol=1e-6)


@pytest.fixture(scope="module")
def digits_csi():
    return tiny_digits_run("csi")


def test_a_tiny_run_on_the_digits_trains_and_scores_finitely(digits_csi):
    assert_trained_and_scored_finitely(digits_csi)
    scores = digits_csi.scores
    assert len(scores.train_s_nnd) == 50 and scores.neighbours.shape == (len(digits_csi.scored), 5)
    assert digits_csi.metrics["auroc_nnd"] >= 0.75  # measured 0.840 (seed 2, one epoch; raw pixels 1.000)
    # the context features are the 180°-rotated image's, not the plain image's
    assert not np.allclose(scores.features, scores.context_features)


def test_the_bundle_keeps_the_rotation_head_and_scores_as_the_original(digits_csi):
    back = assert_bundle_scores_as_the_original(digits_csi)
    theirs, ours = back.trained.model.state_dict(), digits_csi.trained.model.state_dict()
    assert "shift_head.weight" in theirs and list(theirs) == list(ours)
    assert all(torch.equal(theirs[k].cpu(), ours[k].cpu()) for k in ours)


def test_only_a_csi_model_has_a_rotation_head():
    assert not any(k.startswith("shift_head") for k in Con2Model("resnet_small", 12, 8).state_dict())
    head = Con2Model("resnet_small", 12, 8, shift_classes=4).shift_head
    assert head.weight.shape == (4, 128)
