"""The floor every learned method must beat: raw pixels scored like S_NND, the cosine 1-NN distance of the
flattened pixels of each scored image to the normal training images (no model, no augmentation)."""

from __future__ import annotations

import numpy as np
import torch

from engine.loading import LoadedData
from engine.scoring import NNDScorer


def pixel_nnd_scores(loaded: LoadedData) -> np.ndarray:
    """(M,) anomaly scores of the scored images; a scored image that also trained is left out of the bank."""
    bank = loaded.train.pixels.flatten(1).float()  # (n, C·S·S); the scorer L2-normalises
    queries = loaded.score.pixels.flatten(1).float()  # (M, C·S·S)
    return NNDScorer(k=1).fit(bank).anomaly_scores(queries, torch.as_tensor(loaded.score_in_train)).numpy()
