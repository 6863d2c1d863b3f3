"""The floor every learned method must beat: raw pixels scored like S_NND, the cosine 1-NN distance of the
flattened pixels of each scored image to the normal training images (no model, no augmentation).

Every labelled run reports its AUROC beside the learned scores, so a user sees at once whether training
paid off. Images larger than `REFERENCE_SIZE` are area-downsampled to it first: the reference must stay
cheap next to training (a 40k × 40k search on 224 px RGB pixels would not), and the point of it is the
ranking a trivial method gets, not the best raw-pixel method there is.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from engine.copies import copy_groups
from engine.loading import LoadedData
from engine.scoring import NNDScorer

REFERENCE_SIZE = 32  # pixels per side the reference compares at, at most
REFERENCE_MAX_WORK = 4e12  # multiply-adds (queries × bank × pixels) above which the reference is skipped


def _flat(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, S, S) uint8 → (N, C·s·s) float, area-downsampled to s = min(S, size); in chunks to bound memory."""
    out = []
    for start in range(0, pixels.shape[0], 4096):
        x = pixels[start : start + 4096].float()
        if x.shape[-1] > size:
            x = F.adaptive_avg_pool2d(x, size)
        out.append(x.flatten(1))
    return torch.cat(out) if out else torch.empty(0, 0)


def pixel_nnd(bank: torch.Tensor, queries: torch.Tensor, query_in_bank: np.ndarray | None = None) -> np.ndarray | None:
    """(M,) raw-pixel S_NND of `queries` against `bank` (both (·, C, S, S) uint8); higher = more anomalous.

    query_in_bank: bank row of each query that is itself a training image, else −1 (left out of its own
    bank with every exact copy of it, as the learned scores leave it out). None when the search would be
    too large to be a cheap reference.
    """
    size = min(bank.shape[-1], REFERENCE_SIZE)
    if queries.shape[0] * bank.shape[0] * bank.shape[1] * size * size > REFERENCE_MAX_WORK:
        return None
    exclude = None if query_in_bank is None else torch.as_tensor(query_in_bank, dtype=torch.long)
    copies = None if exclude is None else torch.as_tensor(copy_groups(bank))
    return NNDScorer(k=1).fit(_flat(bank, size), copies).anomaly_scores(_flat(queries, size), exclude).numpy()


def pixel_nnd_scores(loaded: LoadedData) -> np.ndarray:
    """(M,) raw-pixel S_NND of a run's scored images; a scored image that also trained is left out of the bank."""
    scores = pixel_nnd(loaded.train.pixels, loaded.score.pixels, loaded.score_in_train)
    if scores is None:
        raise ValueError("the data set is too large for the raw-pixel reference")
    return scores
