"""self-OECL (engine/oecl.py): its views, the loss against loops from the paper's equation, the warm-up,
gradients, the norm score, a tiny run on the digits and the bundle round trip."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from peer_runs import assert_bundle_scores_as_the_original, assert_trained_and_scored_finitely, tiny_digits_run
from sklearn.metrics import roc_auc_score

from engine import oecl
from engine.augment import ContentAugmentation, normalize, to_float
from engine.config import TrainConfig
from engine.model import Con2Model
from engine.rotations import rotate
from engine.train import _objective, train


def test_views_are_two_views_of_the_upright_and_quarter_turned_images_then_of_the_outliers():
    pixels = torch.randint(0, 256, (3, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    identity = ContentAugmentation(8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0,
                                   grey_p=0.0, blur_p=0.0)  # fmt: skip
    views = oecl.oecl_views(pixels, identity, torch.Generator().manual_seed(0))
    assert views.shape == (24, 3, 8, 8)
    x = to_float(pixels)
    turns = [(0, 1), (0, 1), (2, 3), (2, 3)]  # blocks of 2N rows: normal views ×2, outlier views ×2
    for block, pair in enumerate(turns):
        for j, k in enumerate(pair):
            for i in range(3):
                expected = normalize(rotate(x[i : i + 1], k))[0]
                assert torch.allclose(views[block * 6 + j * 3 + i], expected, atol=1e-5)


def oecl_loss_loop(z, projection, tau, weight) -> float:
    """L_oecl = NT-Xent over the normal views (instance = rotation and image) + α·mean ‖f‖₂ of the outliers."""
    z, projection = z.double(), projection.double()
    half, losses = z.shape[0] // 2, []
    n = half // 4
    instance = [(r // n % 2, r % n) for r in range(half)]  # rows: view-major, then rotation (0°, 90°), then image
    for i in range(half):
        for j in range(half):
            if j != i and instance[j] == instance[i]:
                denominator = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(half) if k != i)
                losses.append(-math.log(math.exp(float(z[i] @ z[j]) / tau) / denominator))
    norms = [math.sqrt(sum(v * v for v in projection[r].tolist())) for r in range(half, 2 * half)]
    return sum(losses) / len(losses) + weight * sum(norms) / len(norms)


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_the_loss_is_nt_xent_on_the_normal_views_plus_the_outliers_norm(weight):
    g = torch.Generator().manual_seed(1)
    projection = torch.randn(16, 5, generator=g) * 3
    z = F.normalize(torch.randn(16, 5, generator=g), dim=1)  # independent of projection: the loss must not mix them
    total, _, _ = oecl.oecl_loss(z, projection, 0.4, weight)
    assert float(total) == pytest.approx(oecl_loss_loop(z, projection, 0.4, weight), rel=1e-5)


def test_outliers_are_neither_anchors_nor_negatives_and_normals_feel_no_penalty():
    g = torch.Generator().manual_seed(2)
    z = F.normalize(torch.randn(16, 5, generator=g), dim=1).requires_grad_()
    projection = torch.randn(16, 5, generator=g).requires_grad_()
    oecl.oecl_loss(z, projection, 0.4, 1.0)[0].backward()
    assert float(z.grad[8:].abs().sum()) == 0 and float(z.grad[:8].abs().sum()) > 0
    assert float(projection.grad[:8].abs().sum()) == 0 and float(projection.grad[8:].abs().sum()) > 0


def test_the_penalty_waits_for_the_warm_up():
    assert oecl.norm_weight(0.0) == 0.0 and oecl.norm_weight(oecl.WARMUP_FRACTION / 2) == 0.0
    assert oecl.norm_weight(oecl.WARMUP_FRACTION) == oecl.NORM_WEIGHT == oecl.norm_weight(0.99)
    pixels = torch.randint(0, 256, (24, 1, 12, 12), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    reports = []
    config = TrainConfig(method="self_oecl", epochs=7, batch_size=8, projection_dim=8, device="cpu")
    train(pixels, config, on_step=reports.append)  # 21 steps: the first two before 5 % of them
    for r in reports:
        weight = oecl.norm_weight((r.step - 1) / r.total_steps)
        # loss history: L_content = NT-Xent, L_context = the norm penalty
        assert r.loss == pytest.approx(r.loss_content + weight * r.loss_context, rel=1e-5)
    assert [oecl.norm_weight((r.step - 1) / r.total_steps) for r in reports[:3]] == [0.0, 0.0, 1.0]


def test_gradients_reach_the_encoder_and_the_content_head():
    torch.manual_seed(0)
    config = TrainConfig(method="self_oecl", projection_dim=8, device="cpu")
    model = Con2Model("resnet_small", 12, 8)
    pixels = torch.randint(0, 256, (4, 1, 12, 12), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    augmentation = ContentAugmentation.from_config(config, 12)
    loss, *_ = _objective(model, pixels, config, augmentation, torch.Generator().manual_seed(0), 1.0, progress=0.5)
    loss.backward()
    for name, module in (("encoder", model.encoder), ("content", model.content_head)):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads), name


def test_the_score_is_the_norm_of_the_mean_projection_and_ranks_a_short_one_last():
    g = torch.Generator().manual_seed(5)
    views = [torch.randn(6, 4, generator=g) + torch.tensor([4.0, 0, 0, 0]) for _ in range(3)]
    views[0][5] = views[1][5] = torch.tensor([0.3, 0.1, 0.0, 0.0])  # the outlier: short in every view
    views[2][5] = torch.tensor([-0.3, 0.0, 0.1, 0.0])
    normality = oecl.norm_normality(views)
    for i in range(6):
        mean = [sum(float(v[i, d]) for v in views) / 3 for d in range(4)]
        assert float(normality[i]) == pytest.approx(math.sqrt(sum(c * c for c in mean)), rel=1e-9)
    assert int(normality.argmin()) == 5


@pytest.fixture(scope="module")
def digits_oecl():
    return tiny_digits_run("self_oecl")


def test_a_tiny_run_on_the_digits_trains_and_scores_finitely(digits_oecl):
    assert_trained_and_scored_finitely(digits_oecl)
    assert (digits_oecl.scores.s_nnd < 0).all()  # −‖·‖: a norm is positive
    # no AUROC floor: one epoch is a handful of steps, too few for the norm penalty to order the norms
    # (measured 0.325 on digit 0, below chance; benchmarks/quality.py measures the ranking); what must hold is
    # that the reported AUROC is the one of the stored scores against the labels (anomalous = not digit 0)
    anomalous = [label != "0" for label in digits_oecl.scored.labels]
    assert digits_oecl.metrics["auroc_nnd"] == pytest.approx(roc_auc_score(anomalous, digits_oecl.scores.s_nnd))


def test_the_bundle_round_trip_scores_as_the_original_and_adds_no_head(digits_oecl):
    back = assert_bundle_scores_as_the_original(digits_oecl, tta=3)
    assert list(back.trained.model.state_dict()) == list(Con2Model("resnet_small", 16, 16).state_dict())
