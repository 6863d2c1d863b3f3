"""Each loss equals a slow loop-based reference written straight from the paper's equations."""

import math

import pytest
import torch
import torch.nn.functional as F

from engine.losses import (
    alpha_at,
    content_alignment_loss,
    context_contrasting_loss,
    instance_discrimination_loss,
    simclr_loss,
)
from engine.model import Con2Model


def ell(z, i, j, tau):
    """Eq. 1 for anchor i and positive j over every other row of z, with Python loops."""
    numerator = math.exp(float(z[i] @ z[j]) / tau)
    denominator = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(len(z)) if k != i)
    return -math.log(numerator / denominator)


def reference_context(z, n, tau):
    """Eq. 5: sum over ordered pairs of different views with equal context label, divided by K = 4N(2N − 1)."""
    context = [r // (2 * n) for r in range(4 * n)]
    total = sum(ell(z, i, j, tau) for i in range(4 * n) for j in range(4 * n) if i != j and context[i] == context[j])
    return total / (4 * n * (2 * n - 1))


def reference_content(z, n, tau):
    """Eq. 6–7: for each source image x, all ordered pairs inside Λ(x) (4 views), divided by 12N."""
    total = 0.0
    for x in range(n):
        views = [x, n + x, 2 * n + x, 3 * n + x]  # t(x), t'(x), t(x^c), t'(x^c)
        total += sum(ell(z, i, j, tau) for i in views for j in views if i != j)
    return total / (12 * n)


def reference_simclr(z, n, tau):
    """NT-Xent: each of the 2N views with its one partner view, averaged."""
    return sum(ell(z, i, (i + n) % (2 * n), tau) for i in range(2 * n)) / (2 * n)


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_context_contrasting_matches_eq5(n, tau):
    torch.manual_seed(n)
    z = F.normalize(torch.randn(4 * n, 16, dtype=torch.float64), dim=1)
    assert context_contrasting_loss(z, tau).item() == pytest.approx(reference_context(z, n, tau), rel=1e-5)


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_content_alignment_matches_eq7(n, tau):
    torch.manual_seed(10 + n)
    z = F.normalize(torch.randn(4 * n, 16, dtype=torch.float64), dim=1)
    assert content_alignment_loss(z, tau).item() == pytest.approx(reference_content(z, n, tau), rel=1e-5)


@pytest.mark.parametrize("n", [2, 6])
def test_simclr_matches_nt_xent(n):
    torch.manual_seed(20 + n)
    z = F.normalize(torch.randn(2 * n, 8, dtype=torch.float64), dim=1)
    assert simclr_loss(z, 0.2).item() == pytest.approx(reference_simclr(z, n, 0.2), rel=1e-5)


def test_losses_differ_and_see_the_layout():
    """Swapping the context halves leaves L_context alone but breaks L_content's positives."""
    torch.manual_seed(0)
    n = 4
    z = F.normalize(torch.randn(4 * n, 8), dim=1)
    shuffled = torch.cat([z[: 2 * n], z[2 * n :][torch.randperm(2 * n)]])
    assert context_contrasting_loss(shuffled, 0.2).item() == pytest.approx(
        context_contrasting_loss(z, 0.2).item(), rel=1e-5
    )
    assert content_alignment_loss(shuffled, 0.2).item() != pytest.approx(
        content_alignment_loss(z, 0.2).item(), rel=1e-3
    )


def test_perfect_alignment_gives_lower_content_loss():
    torch.manual_seed(1)
    n = 4
    base = F.normalize(torch.randn(n, 8), dim=1)
    aligned = base.repeat(4, 1)  # all four views of each image identical
    random = F.normalize(torch.randn(4 * n, 8), dim=1)
    assert content_alignment_loss(aligned, 0.2) < content_alignment_loss(random, 0.2)


def test_anchor_without_positive_is_an_error():
    z = F.normalize(torch.randn(3, 4, generator=torch.Generator().manual_seed(2)), dim=1)
    with pytest.raises(ValueError, match="positive"):
        instance_discrimination_loss(z, torch.zeros(3, 3, dtype=torch.bool), 0.2)


def test_alpha_anneals_linearly_from_zero_to_one():
    assert alpha_at(0, 11) == 0.0
    assert alpha_at(5, 11) == pytest.approx(0.5)
    assert alpha_at(10, 11) == 1.0
    assert alpha_at(0, 1) == 1.0


def test_gradients_reach_both_heads_and_the_encoder():
    torch.manual_seed(0)
    model = Con2Model("resnet_small", image_size=16, projection_dim=8)
    out = model(torch.randn(8, 3, 16, 16))  # 4N views with N = 2
    loss = context_contrasting_loss(out.z_context, 0.2) + 0.5 * content_alignment_loss(out.z_content, 0.2)
    loss.backward()
    for name, module in [
        ("encoder", model.encoder),
        ("context head", model.context_head),
        ("content head", model.content_head),
    ]:
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name


def test_constant_alpha_schedule_is_one_throughout():
    assert alpha_at(0, 11, "constant") == 1.0 and alpha_at(5, 11, "constant") == 1.0


@pytest.mark.parametrize("n", [2, 5])
def test_one_view_per_context_losses_match_their_equations(n):
    """k = 1: views [t(x) …, t(x^c) …]; context positives are the other N − 1 views of the same context,
    the content positive of a view is its source's view in the other context."""
    torch.manual_seed(30 + n)
    tau = 0.3
    z = F.normalize(torch.randn(2 * n, 8, dtype=torch.float64), dim=1)
    context = [r // n for r in range(2 * n)]
    pairs = [(i, j) for i in range(2 * n) for j in range(2 * n) if i != j and context[i] == context[j]]
    expected_context = sum(ell(z, i, j, tau) for i, j in pairs) / len(pairs)
    expected_content = sum(ell(z, i, (i + n) % (2 * n), tau) for i in range(2 * n)) / (2 * n)
    assert context_contrasting_loss(z, tau, 1).item() == pytest.approx(expected_context, rel=1e-5)
    assert content_alignment_loss(z, tau, 1).item() == pytest.approx(expected_content, rel=1e-5)
    # the same rows read with the paper's layout (k = 2) pair other views: the layout argument matters
    if n % 2 == 0:
        assert content_alignment_loss(z, tau, 2).item() != pytest.approx(expected_content, rel=1e-3)
