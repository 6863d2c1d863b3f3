"""Con2's two contrastive losses and the SimCLR baseline, as pure functions of tensors.

All three are one instance-discrimination loss (paper Eq. 1) with different positive sets:

    ℓ(z, z', Z) = −log( exp(sim(z, z')/τ) / Σ_{z''∈Z, z''≠z} exp(sim(z, z'')/τ) )

averaged over every ordered positive pair. Each anchor has the same number of positives in every
loss here, so "mean over anchors of the mean over its positives" equals the paper's normalisers
(K = 4N(2N−1) for Eq. 5, 12N for Eq. 7). There is no τ/0.07 factor.

View layout used throughout (batch of N originals, built by `augment.con2_views`):
    rows [0, 2N)   context label 0: view t of x_1..x_N, then view t' of x_1..x_N
    rows [2N, 4N)  context label 1: the same for the context images t_c(x_1)..t_c(x_N)
so view r belongs to source image r mod N and has context label r // 2N.
"""

from __future__ import annotations

import torch


def instance_discrimination_loss(z: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean of ℓ (Eq. 1) over every ordered positive pair (i, j).

    z: (M, D) L2-normalised projections. positives: (M, M) bool, True where j is a positive of
    anchor i; the diagonal is ignored. The denominator runs over every other row of z (positives
    included). Every anchor must have at least one positive.
    """
    m = z.shape[0]
    eye = torch.eye(m, dtype=torch.bool, device=z.device)
    # (M, M) in float32 even under autocast (which would run this matmul in bfloat16): exp(sim/τ) needs the
    # precision, since bf16's 8 bits of mantissa blur similarities 0.004 apart, 2 % of a logit at τ = 0.2
    with torch.autocast(z.device.type, enabled=False):
        z = z.float()
        logits = (z @ z.T) / temperature
    logits = logits.masked_fill(eye, float("-inf"))  # z'' ≠ z
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (M, M)
    positives = positives & ~eye
    counts = positives.sum(dim=1)
    if bool((counts == 0).any()):
        raise ValueError("every anchor needs at least one positive")
    per_anchor = -(log_prob.masked_fill(~positives, 0.0)).sum(dim=1) / counts  # (M,)
    return per_anchor.mean()


def view_labels(n: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Source-image index and context label of each of the 4N views (layout in the module doc)."""
    rows = torch.arange(4 * n, device=device)
    return rows % n, rows // (2 * n)


def context_contrasting_loss(z_context: torch.Tensor, temperature: float) -> torch.Tensor:
    """L_context (Eq. 5) on the context head's outputs.

    z_context: (4N, D), L2-normalised, in the module's view layout. Positives: every other view with
    the same context label (2N − 1 per anchor); negatives: every view of the other context.
    """
    _, context = view_labels(z_context.shape[0] // 4, z_context.device)
    return instance_discrimination_loss(z_context, context[:, None] == context[None, :], temperature)


def content_alignment_loss(z_content: torch.Tensor, temperature: float) -> torch.Tensor:
    """L_content (Eq. 7) on the content head's outputs.

    z_content: (4N, D), L2-normalised. Positives: the other three views of the same source image
    (its second view and both views of its context image, Λ(x) in Eq. 6); all other views negatives.
    """
    source, _ = view_labels(z_content.shape[0] // 4, z_content.device)
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
