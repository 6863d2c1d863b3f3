"""FIRM (engine/firm.py): its views, the loss against a loop written from the paper's equation, gradients, the
rotation-ensemble S_NND against a loop, a tiny run on the digits and the bundle round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from peer_runs import assert_bundle_scores_as_the_original, assert_trained_and_scored_finitely, tiny_digits_run

from engine import firm
from engine.augment import ContentAugmentation, normalize, to_float
from engine.config import TrainConfig
from engine.embed import embed
from engine.ensemble import ensemble_scores
from engine.model import Con2Model
from engine.rotations import rotate
from engine.scoring import NNDScorer
from engine.train import _objective

IDENTITY = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0, grey_p=0.0, blur_p=0.0)


def firm_loss_loop(z: torch.Tensor, groups: list[int], tau: float) -> list[float]:
    """Each anchor's loss from the equation: −1/|P(i)| Σ_{p∈P(i)} log(exp(s_ip/τ) / Σ_{k≠i} exp(s_ik/τ)), with
    P(i) every other view of the same group (all normals: group 0; each outlier: its own group)."""
    z = z.double()
    b, out = z.shape[0], []
    for i in range(b):
        denominator = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(b) if k != i)
        positives = [p for p in range(b) if p != i and groups[p] == groups[i]]
        terms = [-math.log(math.exp(float(z[i] @ z[p]) / tau) / denominator) for p in positives]
        out.append(sum(terms) / len(terms))
    return out


def test_the_loss_is_the_multi_positive_contrastive_loss_of_the_paper():
    torch.manual_seed(0)
    n, tau = 3, 0.3
    z = F.normalize(torch.randn(4 * n, 6), dim=1)
    groups = torch.tensor([0, 0, 0, 1, 2, 3] * 2)  # the firm_views layout for N = 3
    per_anchor = firm_loss_loop(z, groups.tolist(), tau)
    total, normal, outlier = firm.firm_loss(z, groups, tau)
    assert float(total) == pytest.approx(sum(per_anchor) / len(per_anchor), rel=1e-5)
    normal_rows = [i for i in range(4 * n) if groups[i] == 0]
    outlier_rows = [i for i in range(4 * n) if groups[i] != 0]
    assert float(normal) == pytest.approx(sum(per_anchor[i] for i in normal_rows) / len(normal_rows), rel=1e-5)
    assert float(outlier) == pytest.approx(sum(per_anchor[i] for i in outlier_rows) / len(outlier_rows), rel=1e-5)


def test_views_are_two_of_each_normal_and_two_of_each_image_rotated_once():
    torch.manual_seed(1)
    pixels = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    identity = ContentAugmentation(8, **IDENTITY)  # T reduced to the identity: the views are the images themselves
    views, groups = firm.firm_views(pixels, identity, torch.Generator().manual_seed(0))
    assert views.shape == (20, 3, 8, 8) and groups.tolist() == ([0] * 5 + [1, 2, 3, 4, 5]) * 2
    x = to_float(pixels)
    for i in range(5):
        assert torch.allclose(views[i], normalize(x[i]), atol=1e-5)
        matches = [k for k in range(4) if torch.allclose(views[5 + i], normalize(rotate(x[i : i + 1], k)[0]))]
        assert len(matches) == 1 and matches[0] in (1, 2, 3)  # rotated, never upright
    assert torch.allclose(views[:10], views[10:])  # the second view of each, here identical


def test_every_outlier_turn_is_drawn_and_none_is_upright():
    turns = firm.outlier_turns(3000, torch.Generator().manual_seed(2), "cpu")
    counts = torch.bincount(turns, minlength=4).tolist()
    assert counts[0] == 0 and all(900 < c < 1100 for c in counts[1:])


def test_gradients_reach_the_encoder_and_the_content_head_and_nothing_else():
    torch.manual_seed(3)
    config = TrainConfig(method="firm", projection_dim=8, device="cpu")
    model = Con2Model("resnet_small", 12, 8)
    assert model.shift_head is None
    pixels = torch.randint(0, 256, (4, 1, 12, 12), dtype=torch.uint8)
    augmentation = ContentAugmentation.from_config(config, 12)
    loss, l_outlier, l_normal = _objective(model, pixels, config, augmentation, torch.Generator().manual_seed(0), 1.0)
    assert loss.item() == pytest.approx((l_outlier.item() + l_normal.item()) / 2, rel=1e-5)  # 2N anchors each
    loss.backward()
    for name, module in (("encoder", model.encoder), ("content", model.content_head)):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads), name
    assert all(p.grad is None for p in model.context_head.parameters())  # FIRM has no context


def test_the_score_is_s_nnd_averaged_over_the_four_rotations():
    torch.manual_seed(4)
    model = Con2Model("resnet_small", 8, 8).eval()
    bank = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    queries = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    identity = ContentAugmentation(8, **IDENTITY)
    view = {
        "params": None,
        "augmentation": identity,
        "batch_size": 4,
        "bf16": False,
        "features": "pooled",
        "copies": None,
    }
    scores, reference = ensemble_scores(model, bank, queries, firm.ROTATION_ENSEMBLE, lambda: NNDScorer(1),
                                        exclude=None, reference_rows=torch.tensor([0, 2]), **view)  # fmt: skip
    expected, expected_reference = [0.0] * 3, [0.0] * 2
    for y in range(4):  # the loop: −max cosine to the bank rotated alike, then the mean over y
        b = F.normalize(embed(model, bank, quarter_turns=y).double(), dim=1)
        q = F.normalize(embed(model, queries, quarter_turns=y).double(), dim=1)
        for i in range(3):
            expected[i] -= max(float(q[i] @ b[m]) for m in range(6)) / 4
        for r, row in enumerate((0, 2)):  # a training image leaves itself out of its bank
            expected_reference[r] -= max(float(b[row] @ b[m]) for m in range(6) if m != row) / 4
    assert np.allclose(scores.numpy(), expected, atol=1e-5)
    assert np.allclose(reference.numpy(), expected_reference, atol=1e-5)


@pytest.fixture(scope="module")
def digits_firm():
    return tiny_digits_run("firm", normal="8")  # the demo's 0 is separated perfectly even by raw pixels


def test_a_tiny_run_on_the_digits_ranks_the_other_digits_above_the_eights(digits_firm):
    assert_trained_and_scored_finitely(digits_firm)
    assert digits_firm.metrics["auroc_nnd"] >= 0.85  # measured 0.967 (seed 2, one epoch, grid features)


def test_the_bundle_round_trip_scores_as_the_original_and_adds_no_head(digits_firm):
    back = assert_bundle_scores_as_the_original(digits_firm)
    assert list(back.trained.model.state_dict()) == list(Con2Model("resnet_small", 16, 16).state_dict())
