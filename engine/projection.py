"""2-D projections of both contexts' features in one shared space (the paper's Figure 1).

Originals and context images are fitted together, so a sample's two points can be joined by a line:
for normal samples these alignment lines run parallel between the two context clusters.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.decomposition import PCA

PROJECTIONS = ("umap", "pca")


def project(features: np.ndarray, context_features: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """Project (M, D) original and (M, D) context features together → (M, 4): x, y, context x, context y.

    Features are L2-normalised first (the scores compare them by cosine). UMAP uses the cosine
    metric, a fixed seed and at most 15 neighbours; PCA is exact and deterministic.
    """
    m = features.shape[0]
    points = np.concatenate([features, context_features]).astype(np.float32)  # (2M, D)
    points /= np.linalg.norm(points, axis=1, keepdims=True).clip(min=1e-12)
    if method == "pca":
        xy = PCA(n_components=2, random_state=seed).fit_transform(points)
    elif method == "umap":
        xy = _umap(points, seed)
    else:
        raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}")
    return np.concatenate([xy[:m], xy[m:]], axis=1).astype(np.float32)


def _umap(points: np.ndarray, seed: int) -> np.ndarray:
    if points.shape[0] < 4:  # UMAP's spectral layout needs a few points; fall back to PCA
        return PCA(n_components=2).fit_transform(points)
    import umap  # imported late: numba compilation costs seconds at import

    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(15, points.shape[0] - 1),
        metric="cosine",
        random_state=seed,
        init="spectral" if points.shape[0] > 10 else "random",
    )
    with warnings.catch_warnings():  # a fixed seed makes UMAP single-threaded, as intended here
        warnings.filterwarnings("ignore", message=".*overridden to 1 by setting random_state.*")
        return reducer.fit_transform(points)
