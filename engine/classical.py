"""Classical references: scikit-learn on raw pixels, no learning — the floor every learned method must clear.

Three values of `TrainConfig.method` (`engine.config.CLASSICAL_METHODS`), each a scorer that follows the
engine's contract (`fit(bank, copies=None) -> self`, `anomaly_scores(x, exclude=None) -> (M,)`,
**higher = more anomalous**) on the flattened pixels, area-downsampled to at most `PIXEL_SIZE` per side:

- `pixels_knn`: S_NND of the pixels, minus the mean cosine similarity to the k nearest training images
  (`ScoreConfig.k`, 1 by default): the same score as the `auroc_pixels` reference every run reports.
- `pixels_pca_knn`: the same on the images as PCA reconstructs them from the components, fitted on the
  training images, that keep `PCA_VARIANCE` of their variance (`PCAProjection`).
- `pixels_iforest`: scikit-learn's `IsolationForest`, seeded by `TrainConfig.seed`; score = −`score_samples`.

How they fill a run's columns (`ScoreResult`): the method's own score goes in the `s_nnd` slot, the one the
Review queue ranks by and `auroc_nnd` measures; the `s_lh` slot holds S_LH (`engine.scoring.LHScorer`, the
Ledoit–Wolf Gaussian) on the features the method compares (the pixels; the PCA components for pixels_pca_knn),
so both columns stay meaningful and the database, which needs both, gets both. `features` are those same
features of x and `context_features` the same of its context image t_c(x), for the projection views; a
classical run has no context clusters, so its silhouette is None.

Leave-one-out, for the training images' reference scores and for scored images that also trained: the
image and its exact copies (`engine.copies`) are left out of the 1-NN bank and of the Gaussian, as for the
learned scores, and IsolationForest scores them with only the trees whose sample holds none of them (each
tree sees at most half the training images, so about half the trees qualify). PCA's basis is the one
exception: it is fitted once on every training image, the left-out one included (one of n in a basis that
keeps the main directions of variation; refitting per image would cost n decompositions).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

from engine.augment import apply_context
from engine.baseline import REFERENCE_SIZE
from engine.config import ScoreConfig, TrainConfig
from engine.context_choice import resolve_context
from engine.copies import copy_groups
from engine.scoring import LHScorer, NNDScorer
from engine.train import TrainingCancelled
from engine.tta import NEIGHBOURS, ScoreResult

PIXEL_SIZE = REFERENCE_SIZE  # pixels per side the methods compare at, at most: like the raw-pixel reference
PCA_VARIANCE = 0.95  # share of the training images' pixel variance the kept components explain
IFOREST_TREES = 200
IFOREST_MAX_SAMPLES = 256  # scikit-learn's default sample per tree, capped at half the training images
CHUNK = 4096  # images per chunk while flattening and while scoring with the forest

ProgressCallback = Callable[[str, int, int], "bool | None"]


def flat_pixels(images: torch.Tensor, size: int = PIXEL_SIZE) -> torch.Tensor:
    """(N, C, S, S) uint8, or float in [0, 1] → (N, C·s·s) float32 in [0, 1], area-downsampled to
    s = min(S, size); in chunks, so only one chunk is ever held in float beside the output."""
    n, c, s, _ = images.shape
    side = min(s, size)
    out = torch.empty(n, c * side * side)
    for start in range(0, n, CHUNK):
        x = images[start : start + CHUNK].float()
        if images.dtype == torch.uint8:
            x = x / 255.0
        if s > side:
            x = F.adaptive_avg_pool2d(x, side)
        out[start : start + CHUNK] = x.flatten(1)
    return out


def context_pixels(images: torch.Tensor, context: str, size: int = PIXEL_SIZE) -> torch.Tensor:
    """`flat_pixels` of the context images t_c(x) of (N, C, S, S) uint8 images, with their own channel count."""
    out = []
    for start in range(0, images.shape[0], CHUNK):
        x = images[start : start + CHUNK]
        # apply_context works on 3 channels; a greyscale image's three are equal, so its first is the image
        out.append(flat_pixels(apply_context(x.float() / 255.0, context)[:, : x.shape[1]], size))
    return torch.cat(out) if out else torch.empty(0, 0)


class PCAProjection:
    """The training images as PCA reconstructs them: mean + P(x − mean), P the projection onto the components
    that keep `variance` of their variance, in coordinates (K + 1 of them) of an orthonormal basis of those
    components and the mean. Cosine similarity of the coordinates is that of the reconstructed images, so the
    1-NN compares images like pixels_knn does, with the minor directions of variation dropped (cosine of the
    centred components alone ranks worse: an image near the mean has no direction; on the digits 0.91 against
    1.00)."""

    def __init__(self, variance: float = PCA_VARIANCE) -> None:
        self.variance = variance

    def fit(self, bank: torch.Tensor) -> PCAProjection:
        """bank: (n, D) training pixels, n ≥ 2."""
        x = bank.numpy()
        n, d = x.shape
        # n > D: the D × D covariance's eigenvectors are the cheap route; else the n × D SVD
        pca = PCA(svd_solver="covariance_eigh" if n > d else "full").fit(x)
        ratio = np.nan_to_num(pca.explained_variance_ratio_)  # NaN when every training image is the same
        kept = int(np.searchsorted(np.cumsum(ratio), self.variance) + 1)
        self.n_components_ = max(1, min(kept, len(ratio)))
        self.components_ = torch.as_tensor(pca.components_[: self.n_components_], dtype=torch.float32)  # (K, D)
        self.explained_variance_ratio_ = float(ratio[: self.n_components_].sum())
        mean = torch.as_tensor(pca.mean_, dtype=torch.float32)
        # the mean's part outside the components: its length is the reconstruction's last coordinate
        self.offset_ = float(torch.linalg.vector_norm(mean - self.components_.T @ (self.components_ @ mean)))
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """(M, D) pixels → (M, K + 1) coordinates of their reconstructions: C·x (as C·mean + C·(x − mean)),
        and the mean's length outside the components."""
        return torch.cat([x @ self.components_.T, torch.full((x.shape[0], 1), self.offset_)], dim=1)


def _path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the average path length of an unsuccessful search in a binary search tree of n points (Liu et al.,
    2008), which IsolationForest adds at a leaf still holding n > 1 samples; c(1) = 0, c(2) = 1."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _node_lengths(tree) -> np.ndarray:
    """(nodes,) float64: each node's depth (edges from the root), plus c(n_node_samples) at a leaf."""
    depth = np.zeros(tree.node_count)
    for node in range(tree.node_count):  # scikit-learn numbers a node's children after it
        for child in (tree.children_left[node], tree.children_right[node]):
            if child >= 0:
                depth[child] = depth[node] + 1
    leaf = tree.children_left < 0
    return depth + np.where(leaf, _path_length(tree.n_node_samples), 0.0)


class IsolationForestScorer:
    """scikit-learn's IsolationForest as an anomaly scorer: −`score_samples`, 2^(−E[h(x)] / c(ψ)), higher = more
    anomalous, where h is the depth at which a tree isolates x and ψ each tree's sample size.

    The depths are read tree by tree, so a training image can be scored by only the trees grown without it and
    its copies (out of bag); over all trees the score equals scikit-learn's own.
    """

    def __init__(self, n_estimators: int = IFOREST_TREES, max_samples: int = IFOREST_MAX_SAMPLES, seed: int = 0):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.seed = seed

    def fit(self, bank: torch.Tensor, copies: np.ndarray | torch.Tensor | None = None) -> IsolationForestScorer:
        """bank: (n, D) training features, n ≥ 2; copies: (n,) copy group of each row (`engine.copies`)."""
        x = bank.numpy().astype(np.float32)
        n = x.shape[0]
        if n < 2:
            raise ValueError("IsolationForest needs at least two training images")
        # at most half the bank a tree: each image is then out of the bag of about half the trees
        psi = min(self.max_samples, max(1, n // 2))
        self.forest_ = IsolationForest(n_estimators=self.n_estimators, max_samples=psi, random_state=self.seed)
        self.forest_.fit(x)
        self.psi_ = self.forest_.max_samples_
        trees = len(self.forest_.estimators_)
        in_bag = np.zeros((n, trees), dtype=bool)  # (n, T): row j was in tree t's sample
        for t, rows in enumerate(self.forest_.estimators_samples_):
            in_bag[rows, t] = True
        group = np.arange(n) if copies is None else np.asarray(torch.as_tensor(copies).cpu(), dtype=np.int64)
        group_in_bag = np.zeros_like(in_bag)
        np.logical_or.at(group_in_bag, group, in_bag)  # indexed by group id, a row index (copy_groups)
        self.left_out_bag_ = group_in_bag[group]  # (n, T): trees that saw row j or any copy of it
        whole = np.bincount(group, minlength=n)[group] >= n
        lonely = ~(~self.left_out_bag_).any(axis=1) | whole
        # a group too large to leave out (the whole bank, or in every tree): leave out only the row itself
        self.left_out_bag_[lonely] = in_bag[lonely]
        # (per tree) each node's path length: its depth, plus c(its sample count) where it is a leaf
        self.node_lengths_ = [_node_lengths(tree.tree_) for tree in self.forest_.estimators_]
        return self

    def depths(self, x: np.ndarray) -> np.ndarray:
        """(M, D) → (M, T) float64: the path length h_t(x) of each query in each tree, with c(leaf size) added."""
        forest = self.forest_
        x = np.ascontiguousarray(x, dtype=np.float32)  # once, not per tree
        every = np.arange(x.shape[1])
        out = np.empty((x.shape[0], len(forest.estimators_)))
        for t, (tree, features) in enumerate(zip(forest.estimators_, forest.estimators_features_, strict=True)):
            # Each tree sees every feature (max_features = 1.0): copying the (q, D) chunk per tree through the
            # index array took 148 of the 174 s cProfile measured for scoring a CIFAR-10 class's 3,072-pixel rows.
            view = x if np.array_equal(features, every) else np.ascontiguousarray(x[:, features])
            out[:, t] = self.node_lengths_[t][tree.apply(view)]
        return out

    def anomaly_scores(self, queries: torch.Tensor, exclude: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """queries: (M, D) → (M,) float32, higher = more anomalous. exclude[i]: bank row of query i when it is a
        training image (scored by the trees grown without it and its copies), else −1."""
        x = queries.numpy().astype(np.float32)
        m = x.shape[0]
        ex = np.full(m, -1) if exclude is None else np.asarray(torch.as_tensor(exclude).cpu(), dtype=np.int64)
        scores = np.empty(m)
        for start in range(0, m, CHUNK):
            h = self.depths(x[start : start + CHUNK])  # (q, T)
            rows = ex[start : start + CHUNK]
            use = np.ones_like(h, dtype=bool)
            inside = rows >= 0
            use[inside] = ~self.left_out_bag_[rows[inside]]
            mean_depth = (h * use).sum(axis=1) / use.sum(axis=1)
            scores[start : start + CHUNK] = 2.0 ** (-mean_depth / _path_length(np.array([self.psi_]))[0])
        return torch.as_tensor(scores, dtype=torch.float32)


@dataclass
class ClassicalFit:
    """A classical method fitted on the training images: the scorer, and the features it compares."""

    scorer: NNDScorer | IsolationForestScorer
    pca: PCAProjection | None  # pixels_pca_knn's basis; None for the methods that compare the pixels themselves
    copies: np.ndarray  # (n,) copy group of each training image (engine.copies): left out with it
    bank_features: torch.Tensor  # (n, D) the training images' features, as the scorer holds them

    def project(self, flat: torch.Tensor) -> torch.Tensor:
        """(M, C·s·s) flattened pixels (`flat_pixels`, `context_pixels`) → (M, D): what the scorer compares."""
        return flat if self.pca is None else self.pca.transform(flat)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(M, C, S, S) uint8 or float in [0, 1] → (M, D), as `project` makes them."""
        return self.project(flat_pixels(images))


def fit_classical(bank: torch.Tensor, method: str, *, k: int = 1, seed: int = 0) -> ClassicalFit:
    """Fit the classical `method` on (n, C, S, S) training images, n ≥ 2; `k` neighbours (the 1-NN methods), `seed`
    (IsolationForest). score_classical fits with it and adds S_LH, the neighbours and the training images'
    reference scores; the quality suite's references use it alone, for the method's own score."""
    copies = copy_groups(bank)
    bank_pixels = flat_pixels(bank)  # (n, D)
    pca = PCAProjection().fit(bank_pixels) if method == "pixels_pca_knn" else None
    bank_feats = bank_pixels if pca is None else pca.transform(bank_pixels)  # (n, D) or (n, K + 1)
    scorer: NNDScorer | IsolationForestScorer
    if method == "pixels_iforest":
        scorer = IsolationForestScorer(seed=seed).fit(bank_feats, copies)
    elif method in ("pixels_knn", "pixels_pca_knn"):
        scorer = NNDScorer(k).fit(bank_feats, torch.as_tensor(copies))
    else:
        raise ValueError(f"{method!r} is not a classical method")
    return ClassicalFit(scorer, pca, copies, bank_feats)


def score_classical(
    bank: torch.Tensor,
    queries: torch.Tensor,
    train: TrainConfig,
    score: ScoreConfig,
    *,
    query_in_bank: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
) -> tuple[ScoreResult, float]:
    """Fit the classical method `train.method` on the training images and score the queries; (result, fit_s).

    bank: (n, C, S, S) uint8 training images, n ≥ 2; queries: (M, C, S, S) uint8. query_in_bank: (M,) bank row
    of each query that is itself a training image, else −1 (scored leave-one-out with its copies). The training
    images get leave-one-out scores too (all, or a seeded subset of `score.reference_size`). `on_progress(phase,
    done, total)` hears "training" (fitting) and "scoring"; returning False raises TrainingCancelled.
    fit_s: the seconds fitting took (PCA, the forest; 1-NN only stores the bank).
    """
    started = time.perf_counter()

    def report(phase: str, done: int, total: int) -> None:
        if on_progress is not None and on_progress(phase, done, total) is False:
            raise TrainingCancelled(f"cancelled while {phase} ({train.method})")

    n, m = bank.shape[0], queries.shape[0]
    if n < 2:
        raise ValueError(f"{train.method} needs at least 2 training images, got {n}")
    train = resolve_context(train, bank)  # the context half compares context images as a Con2 run would make them
    report("training", 0, 1)
    fitted = fit_classical(bank, train.method, k=score.k, seed=train.seed)
    copies, bank_feats, scorer = fitted.copies, fitted.bank_features, fitted.scorer
    fit_s = time.perf_counter() - started
    report("training", 1, 1)
    query_feats, context = fitted.features(queries), fitted.project(context_pixels(queries, train.context))

    exclude = torch.as_tensor(np.full(m, -1) if query_in_bank is None else query_in_bank, dtype=torch.long)
    reference = np.arange(n)
    if n > score.reference_size:  # as engine.tta: a seeded subset is plenty for percentiles
        reference = np.sort(np.random.default_rng(score.seed).choice(n, score.reference_size, replace=False))
    has_reference = n >= 3
    ref_rows = torch.as_tensor(reference, dtype=torch.long)
    lh = LHScorer(score.lh_shrinkage, score.lh_epsilon).fit(bank_feats, torch.as_tensor(copies))
    report("scoring", 0, 2)
    s_main = scorer.anomaly_scores(query_feats, exclude)
    s_lh = lh.anomaly_scores(query_feats, exclude)
    report("scoring", 1, 2)
    t_main = t_lh = None
    if has_reference:
        t_main = scorer.anomaly_scores(bank_feats[ref_rows], ref_rows).numpy()
        t_lh = lh.anomaly_scores(bank_feats[ref_rows], ref_rows).numpy()
    nearest = NNDScorer().fit(bank_feats, torch.as_tensor(copies))
    sims, rows = nearest.neighbours(query_feats, NEIGHBOURS, exclude)  # clamps k to what the bank allows
    report("scoring", 2, 2)
    result = ScoreResult(
        s_nnd=s_main.numpy(),
        s_lh=s_lh.numpy(),
        features=query_feats.numpy(),
        context_features=context.numpy(),
        neighbours=rows.numpy(),
        neighbour_similarity=sims.numpy(),
        reference_rows=reference if has_reference else None,
        train_s_nnd=t_main,
        train_s_lh=t_lh,
        wall_s=time.perf_counter() - started - fit_s,
    )
    if not (np.isfinite(result.s_nnd).all() and np.isfinite(result.s_lh).all()):
        raise ValueError(f"{train.method} gave non-finite scores")
    return result, fit_s
