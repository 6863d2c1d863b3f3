"""Rotations as synthetic outliers: the "shifting" transformations of CSI, FIRM, self-OECL and masked
contrastive learning (the peer methods Con2 is measured against).

These methods assume that an upright normal image rotated by 90°, 180° or 270° is no longer normal, and
train the encoder to tell the rotations apart. That assumption is wrong for rotation-invariant data (cell
microscopy, dermoscopy, aerial views), which is why the Train form says so beside each of them.
"""

from __future__ import annotations

import torch

ROTATIONS = 4  # 0°, 90°, 180°, 270°


def rotate(x: torch.Tensor, quarter_turns: int) -> torch.Tensor:
    """x: (B, C, H, W) square images → the same images rotated counter-clockwise by quarter_turns × 90°."""
    return torch.rot90(x, quarter_turns % ROTATIONS, dims=(-2, -1))


def rotated_copies(x: torch.Tensor, turns: tuple[int, ...] = (0, 1, 2, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of x under each rotation in `turns`, stacked rotation-major.

    x: (B, C, S, S) → (len(turns)·B, C, S, S) = [rot_{turns[0]}(x), rot_{turns[1]}(x), …], and the (len(turns)·B,)
    long tensor of each row's quarter turns (its rotation label).
    """
    images = torch.cat([rotate(x, k) for k in turns])
    labels = torch.tensor(turns, device=x.device).repeat_interleave(x.shape[0])
    return images, labels
