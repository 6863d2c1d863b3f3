"""Con2's two contrastive losses and the SimCLR baseline, as pure functions of tensors.

All three are one instance-discrimination loss (paper Eq. 1) with different positive sets:

    ℓ(z, z', Z) = −log( exp(sim(z, z')/τ) / Σ_{z''∈Z, z''≠z} exp(sim(z, z'')/τ) )

averaged over every ordered positive pair. Each anchor has the same number of positives in every
loss here, so "mean over anchors of the mean over its positives" equals the paper's normalisers
(K = 4N(2N−1) for Eq. 5, 12N for Eq. 7). There is no τ/0.07 factor.

View layout used throughout (batch of N originals, built by `augment.con2_views`), with k views per
context (the paper: k = 2):
    rows [0, kN)    context label 0: view t of x_1..x_N, then (k = 2) view t' of x_1..x_N
    rows [kN, 2kN)  context label 1: the same for the context images t_c(x_1)..t_c(x_N)
so view r belongs to source image r mod N and has context label r // kN. With k = 1 (an option beyond the
paper, half the cost per step) a source's only content positive is its view in the other context.
"""

from __future__ import annotations

import torch

from engine.device import without_autocast


def instance_discrimination_loss(z: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean of ℓ (Eq. 1) over every ordered positive pair (i, j).

    z: (M, D) L2-normalised projections. positives: (M, M) bool, True where j is a positive of
    anchor i; the diagonal is ignored. The denominator runs over every other row of z (positives
    included). Every anchor must have at least one positive.
    """
    return per_anchor_loss(z, positives, temperature).mean()


def per_anchor_loss(z: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """(M,) each anchor's mean of ℓ over its positives, `instance_discrimination_loss` before the mean over
    anchors: FIRM (engine/firm.py) reports its normal and its outlier anchors apart."""
    m = z.shape[0]
    eye = torch.eye(m, dtype=torch.bool, device=z.device)
    # (M, M) in float32 even under autocast (which would run this matmul in bfloat16; tests/test_gpu.py): exp(sim/τ)
    # needs the precision, since bf16's 8 bits of mantissa blur similarities 0.004 apart, 2 % of a logit at τ = 0.2
    with without_autocast(z.device):
        z = z.float()
        logits = (z @ z.T) / temperature
    logits = logits.masked_fill(eye, float("-inf"))  # z'' ≠ z
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (M, M)
    positives = positives & ~eye
    counts = positives.sum(dim=1)
    if bool((counts == 0).any()):
        raise ValueError("every anchor needs at least one positive")
    return -(log_prob.masked_fill(~positives, 0.0)).sum(dim=1) / counts  # (M,)


def view_labels(
    n: int, device: torch.device | None = None, views_per_context: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source-image index and context label of each of the 2kN views (layout in the module doc)."""
    rows = torch.arange(2 * views_per_context * n, device=device)
    return rows % n, rows // (views_per_context * n)


def context_contrasting_loss(z_context: torch.Tensor, temperature: float, views_per_context: int = 2) -> torch.Tensor:
    """L_context (Eq. 5) on the context head's outputs.

    z_context: (2kN, D), L2-normalised, in the module's view layout. Positives: every other view with
    the same context label (kN − 1 per anchor); negatives: every view of the other context.
    """
    k = views_per_context
    _, context = view_labels(z_context.shape[0] // (2 * k), z_context.device, k)
    return instance_discrimination_loss(z_context, context[:, None] == context[None, :], temperature)


def content_alignment_loss(z_content: torch.Tensor, temperature: float, views_per_context: int = 2) -> torch.Tensor:
    """L_content (Eq. 7) on the content head's outputs.

    z_content: (2kN, D), L2-normalised. Positives: the other views of the same source image (k = 2: its
    second view and both views of its context image, Λ(x) in Eq. 6; k = 1: its context image's view);
    all other views negatives.
    """
    k = views_per_context
    source, _ = view_labels(z_content.shape[0] // (2 * k), z_content.device, k)
    return instance_discrimination_loss(z_content, source[:, None] == source[None, :], temperature)


def simclr_loss(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of SimCLR (Chen et al. 2020): z (2N, D) L2-normalised, rows i and i+N are the two views."""
    n = z.shape[0] // 2
    source = torch.arange(2 * n, device=z.device) % n
    return instance_discrimination_loss(z, source[:, None] == source[None, :], temperature)


def alpha_at(step: int, total_steps: int, schedule: str = "linear") -> float:
    """α of Eq. 8: "linear" anneals it from 0 at the first step to 1 at the last (App. C); "constant" is 1."""
    if schedule == "constant" or total_steps <= 1:
        return 1.0
    return min(1.0, step / (total_steps - 1))
