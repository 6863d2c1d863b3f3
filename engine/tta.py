"""Test-time augmented anomaly scores S_NND and S_LH (Eq. 16) for a set of query images.

For each of A draws t_i of T (the same t_i for bank and queries): the first half scores t_i(x)
against the training bank under t_i, the second half scores t_i(x^c) against the bank of the
training images' context images under t_i (or the originals, `context_bank="original"`, Eq. 12
read literally). The score is the mean over the A draws. With A = 1 there is no augmentation: the
plain image against the plain bank. Without `tta_augment` (the CPU recipe) no view is drawn from T: x
against the plain bank and x^c against the context bank, each once (A ≥ 2), or x alone (A = 1). Only one
bank is held at a time, so memory stays at one n×D matrix whatever A is.

The rotation methods CSI, self-OECL, FIRM and masked contrastive (engine/csi.py, oecl.py, firm.py, masked.py)
have no context: their A views are all on x, and their own score (CSI's s_con-SI + s_cls-SI, self-OECL's
projection norm, both negated; FIRM's S_NND over the four rotations, masked contrastive's harmonic mean of
Mahalanobis distances over its eight self-ensemble transforms, engine/ensemble.py) takes S_NND's slot, the one
the Review queue ranks by, as the classical references' does (engine/classical.py); S_LH stays on the encoder
features, and the context features are those of x rotated by 180°, the outlier their training made.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from engine import batchnorm, firm, masked
from engine.augment import ContentAugmentation, ContentParams
from engine.config import AUTO_NND_POOLED, ROTATION_METHODS, ScoreConfig
from engine.context_choice import is_greyscale
from engine.copies import copy_groups
from engine.csi import CSIScorer, rotated_outputs
from engine.device import deterministic, runs_in_bfloat16
from engine.embed import HeadOutputs, embed, project
from engine.ensemble import ensemble_scores
from engine.oecl import norm_normality
from engine.scoring import LHScorer, NNDScorer
from engine.train import TrainedModel, TrainingCancelled

NEIGHBOURS = 5  # nearest training images kept per scored sample: "why was it flagged"
CONTEXT_FREE = ("simclr", *ROTATION_METHODS)  # learned methods without a context cluster: every view is on x


@dataclass
class ScoreResult:
    """Scores and features of the queries (and the training bank's own leave-one-out scores)."""

    s_nnd: np.ndarray  # (M,) higher = more anomalous
    s_lh: np.ndarray  # (M,)
    features: np.ndarray  # (M, D) encoder features (pooled, the encoder's output) of the plain image x
    context_features: np.ndarray  # (M, D) encoder features of its context image t_c(x)
    neighbours: np.ndarray  # (M, 5) bank rows of the nearest training images (plain features), best first; a
    # query that is a training image has neither itself nor its exact copies among them (engine/copies.py)
    neighbour_similarity: np.ndarray  # (M, 5) their cosine similarities
    reference_rows: np.ndarray | None  # (R,) bank rows scored leave-one-out: the reference distribution
    train_s_nnd: np.ndarray | None  # (R,) their leave-one-out S_NND, for percentiles and thresholds
    train_s_lh: np.ndarray | None  # (R,)
    wall_s: float


ProgressCallback = Callable[[int, int], "bool | None"]


def view_plan(config: ScoreConfig, context: str, method: str) -> list[tuple[str | None, str | None, int | None]]:
    """For each test-time augmentation: (context of the query, context of the bank, draw index).

    SimCLR, CSI and self-OECL have no context cluster, so all of their A views are on x. Without `tta_augment`
    every view is the identity, so each distinct view is scored once: x, and x^c when A ≥ 2 (draw index None).
    """
    bank_context = context if config.context_bank == "context" else None
    if config.tta == 1 or (not config.tta_augment and method in CONTEXT_FREE):
        return [(None, None, None)]
    if not config.tta_augment:
        return [(None, None, None), (context, bank_context, None)]
    on_context = 0 if method in CONTEXT_FREE else config.tta // 2
    on_plain = config.tta - on_context
    return [(None, None, i) for i in range(on_plain)] + [
        (context, bank_context, on_plain + i) for i in range(on_context)
    ]


def tta_augmentation(trained: TrainedModel, config: ScoreConfig) -> ContentAugmentation:
    """The T that test-time augmentations are drawn from: the model's own (its TrainConfig's colour jitter,
    blur and largest crop), with the smallest crop `config.tta_min_area` (0 = SimCLR's range, whatever the
    training's `crop_min_area` was)."""
    return ContentAugmentation.from_config(trained.config, trained.image_size, min_area=config.tta_min_area)


def nnd_reads_pooled(config: ScoreConfig, bank: torch.Tensor) -> bool:
    """Whether S_NND reads the pooled output beside the grid (ScoreConfig.nnd_pooled) for this bank of training
    images: `auto` is on where they are colour photographs. Measured at the suite's budget (docs/quality.md,
    finding 47): on CIFAR-10 it lifted S_NND on the mean of the ten classes, most on the classes whose objects sit
    anywhere in the frame (truck, horse, dog); on the aligned greyscale sets, where the grid's "where" is the
    signal, it was level on the scans and cost the digits up to 1.7 points (digit 8)."""
    if config.features != "grid" or config.nnd_pooled == "off":
        return False
    return config.nnd_pooled == "on" or (config.nnd_pooled == AUTO_NND_POOLED and not is_greyscale(bank))


@deterministic()
def score_images(
    trained: TrainedModel,
    bank: torch.Tensor,
    queries: torch.Tensor,
    config: ScoreConfig,
    *,
    query_in_bank: np.ndarray | None = None,
    score_train: bool = True,
    on_progress: ProgressCallback | None = None,
) -> ScoreResult:
    """Score every query image; higher = more anomalous.

    bank: (n, C, S, S) uint8 training images; queries: (M, C, S, S) uint8. query_in_bank: (M,)
    bank row of each query that is itself a training image, else −1 (leave-one-out: the image and every
    exact copy of it in the bank, the same pixels, are left out of its bank, engine/copies.py). With
    score_train, the training images also get leave-one-out scores (the reference distribution
    for percentiles and thresholds): all of them, or a seeded subset of `config.reference_size`.
    `on_progress(done, total)` after each view; it may return False to stop (raises TrainingCancelled).
    Embedding follows the run's recorded precision (engine.device.runs_in_bfloat16).
    """
    started = time.perf_counter()
    model, device = trained.model.eval(), trained.device
    bf16 = runs_in_bfloat16(device, trained.config)
    m, n = queries.shape[0], bank.shape[0]
    if query_in_bank is None:
        query_in_bank = np.full(m, -1, dtype=np.int64)
    exclude = torch.as_tensor(query_in_bank, dtype=torch.long, device=device)
    inside = exclude >= 0
    any_inside = bool(inside.any())  # once: each read is a device sync
    outside_rows = torch.nonzero(~inside).squeeze(1).cpu()
    has_reference = score_train and n >= 3
    reference = np.arange(n)
    if n > config.reference_size:  # the reference costs R × n similarities per view: a subset is plenty
        reference = np.sort(np.random.default_rng(config.seed).choice(n, config.reference_size, replace=False))
    self_rows = torch.as_tensor(reference, device=device)
    copies = torch.as_tensor(copy_groups(bank), device=device)  # left out with the sample: the same pixels
    augmentation = tta_augmentation(trained, config)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    draws = [augmentation.sample(1, generator, device) for _ in range(max(config.tta, 1))]
    plan = view_plan(config, trained.config.context, trained.config.method)
    total = len(plan) + 1

    s_nnd = torch.zeros(m, device=device, dtype=torch.float64)
    s_lh = torch.zeros_like(s_nnd)
    t_nnd = torch.zeros(len(reference), device=device, dtype=torch.float64)
    t_lh = torch.zeros_like(t_nnd)

    statistics: dict[str | None, batchnorm.Statistics] = {}
    if config.batchnorm == "per_context":  # one set per context the views embed in (engine/batchnorm.py)
        for context in {c for query_context, bank_context, _ in plan for c in (query_context, bank_context)}:
            statistics[context] = batchnorm.estimate(model.encoder, bank, context=context, batch_size=config.batch_size)

    # grid features with `lh_pooled` or `nnd_pooled`: every view also carries the pooled output (one forward pass),
    # after the grid columns; S_LH fits each block its own Gaussian, S_NND finds each block its own nearest normal,
    # and the neighbours shown are the grid's
    nnd_pooled = nnd_reads_pooled(config, bank)
    two_blocks = config.features == "grid" and (config.lh_pooled or nnd_pooled)
    grid_width = model.feature_size("grid")

    def view(pixels: torch.Tensor, context: str | None, params) -> torch.Tensor:
        with batchnorm.using(model.encoder, statistics.get(context)):
            return embed(
                model,
                pixels,
                context=context,
                params=params,
                augmentation=augmentation,
                batch_size=config.batch_size,
                bf16=bf16,
                features="grid_pooled" if two_blocks else config.features,
            )

    def blocks(feats: torch.Tensor) -> list[torch.Tensor]:
        """The feature blocks a view carries: the grid and the pooled output, or the features alone."""
        return [feats[:, :grid_width], feats[:, grid_width:]] if two_blocks else [feats]

    def read(feats: torch.Tensor, both: bool) -> list[torch.Tensor]:
        """The blocks one score reads: both (`lh_pooled` for S_LH, `nnd_pooled` for S_NND), else the first."""
        return blocks(feats) if both else blocks(feats)[:1]

    def nnd_features(feats: torch.Tensor) -> torch.Tensor:
        """The columns the neighbours shown compare: the first block."""
        return blocks(feats)[0]

    def query_features(bank_as_query: torch.Tensor | None, context: str | None, params) -> torch.Tensor:
        """Queries that are training images reuse their bank row's features (same image, same view)."""
        if bank_as_query is None:
            return view(queries, context, params)
        out = torch.empty(m, bank_as_query.shape[1], device=device)
        out[inside] = bank_as_query[exclude[inside]]
        if len(outside_rows):
            out[outside_rows.to(device)] = view(queries[outside_rows], context, params)
        return out

    need_bank_as_query = score_train or any_inside
    method = trained.config.method
    own_queries: list[torch.Tensor] = []  # rotation methods: per view, what `_own_scores` reduces
    own_reference: list[torch.Tensor | None] = []
    plain_bank = plain = None
    for done, (query_context, bank_context, draw) in enumerate(plan, start=1):
        params = None if draw is None else draws[draw]
        bank_feats = view(bank, bank_context, params)
        bank_as_query = None
        if need_bank_as_query:
            # the training images seen as queries are: the bank itself, unless the bank is in another context
            bank_as_query = bank_feats if query_context == bank_context else view(bank, query_context, params)
        query_feats = query_features(bank_as_query if any_inside else None, query_context, params)
        own = bank_as_query if has_reference else bank_feats  # the training images as queries
        lh_parts = zip(*(read(f, config.lh_pooled) for f in (bank_feats, query_feats, own)), strict=True)
        for bank_block, query_block, own_block in lh_parts:
            lh = LHScorer(config.lh_shrinkage, config.lh_epsilon).fit(bank_block, copies)
            s_lh += lh.anomaly_scores(query_block, exclude).double()
            if has_reference:
                t_lh += lh.anomaly_scores(own_block[self_rows], self_rows).double()
        if method not in ROTATION_METHODS:
            nnd_parts = list(zip(*(read(f, nnd_pooled) for f in (bank_feats, query_feats, own)), strict=True))
            for bank_block, query_block, own_block in nnd_parts:  # the mean over the blocks: one cosine scale
                nnd = NNDScorer(config.k).fit(bank_block, copies)
                s_nnd += nnd.anomaly_scores(query_block, exclude).double() / len(nnd_parts)
                if has_reference:
                    t_nnd += nnd.anomaly_scores(own_block[self_rows], self_rows).double() / len(nnd_parts)
        bank_feats, query_feats = nnd_features(bank_feats), nnd_features(query_feats)
        if draw is None and query_context is None and bank_context is None:
            plain_bank, plain = bank_feats, query_feats  # the plain view (A = 1): no need to embed it again below
        if method in ROTATION_METHODS:
            reference_rows = self_rows if has_reference else None
            q, t = _own_view(
                trained, bank, queries, params, augmentation, config, copies, exclude, reference_rows, bf16=bf16
            )
            own_queries.append(q)
            own_reference.append(t)
        if on_progress is not None and on_progress(done, total) is False:
            raise TrainingCancelled(f"cancelled while scoring ({done} of {total} views)")

    views = len(plan)
    s_nnd, t_nnd = s_nnd / views, t_nnd / views  # S_NND, like S_LH, is the mean over the views
    if method in ROTATION_METHODS:  # the method's own score in S_NND's slot instead
        s_nnd = _own_scores(method, own_queries)
        t_nnd = _own_scores(method, own_reference) if has_reference else t_nnd
    if plain_bank is None:
        plain_bank = view(bank, None, None)
        plain = nnd_features(query_features(plain_bank if any_inside else None, None, None))
        plain_bank = nnd_features(plain_bank)
    sims, rows = NNDScorer().fit(plain_bank, copies).neighbours(plain, NEIGHBOURS, exclude)  # clamps k to the bank
    # the features shown (projections, silhouette) are the encoder's own, with its training statistics: both
    # contexts normalised alike, so their two clusters are the ones training made
    pooled_with_own_statistics = not statistics and config.features == "pooled"
    shown = plain if pooled_with_own_statistics else embed(model, queries, batch_size=config.batch_size, bf16=bf16)
    # a rotation method's context image is x rotated by 180°: the outlier its training made, its own "context"
    context_view = {"quarter_turns": 2} if method in ROTATION_METHODS else {"context": trained.config.context}
    context_plain = embed(model, queries, **context_view, batch_size=config.batch_size, bf16=bf16)
    if on_progress is not None:
        on_progress(total, total)
    return ScoreResult(
        s_nnd=s_nnd.float().cpu().numpy(),
        s_lh=(s_lh / views).float().cpu().numpy(),
        features=shown.cpu().numpy(),
        context_features=context_plain.cpu().numpy(),
        neighbours=rows.cpu().numpy(),
        neighbour_similarity=sims.cpu().numpy(),
        reference_rows=reference if has_reference else None,
        train_s_nnd=t_nnd.float().cpu().numpy() if has_reference else None,
        train_s_lh=(t_lh / views).float().cpu().numpy() if has_reference else None,
        wall_s=time.perf_counter() - started,
    )


def _own_view(
    trained: TrainedModel,
    bank: torch.Tensor,
    queries: torch.Tensor,
    params: ContentParams | None,
    augmentation: ContentAugmentation,
    config: ScoreConfig,
    copies: torch.Tensor,
    exclude: torch.Tensor,
    reference_rows: torch.Tensor | None,
    *,
    bf16: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One test-time view of a rotation method's own score, for the queries and the reference rows (or None).

    CSI, FIRM, masked contrastive: the (M,) and (R,) anomaly scores under this view, the reference rows
    leave-one-out with their copies. self-OECL: the (M, P) and (R, P) unnormalised projections, whose mean over the
    views `_own_scores` takes the norm of; the score uses no bank, so a training image needs nothing left out.
    """
    view = {"params": params, "augmentation": augmentation, "batch_size": config.batch_size, "bf16": bf16}
    model = trained.model
    if trained.config.method in ("firm", "masked_contrastive"):
        if trained.config.method == "firm":
            transforms, make_scorer, combine = firm.ROTATION_ENSEMBLE, lambda: NNDScorer(config.k), "mean"
        else:
            transforms, combine = masked.SELF_ENSEMBLE, "harmonic"
            make_scorer = lambda: masked.MahalanobisScorer(config.lh_shrinkage, config.lh_epsilon)  # noqa: E731
        return ensemble_scores(model, bank, queries, transforms, make_scorer, **view, features=config.features,
                               copies=copies, exclude=exclude, reference_rows=reference_rows,
                               combine=combine)  # fmt: skip
    if trained.config.method == "csi":
        bank_out = rotated_outputs(model, bank, **view)
        scorer = CSIScorer().fit(bank_out, copies)
        queries_out = scorer.anomaly_scores(rotated_outputs(model, queries, **view), exclude)
        if reference_rows is None:
            return queries_out, None
        own = [HeadOutputs(b.projection[reference_rows], b.shift_logits[reference_rows]) for b in bank_out]
        return queries_out, scorer.anomaly_scores(own, reference_rows)
    queries_out = project(model, queries, **view).projection
    if reference_rows is None:
        return queries_out, None
    return queries_out, project(model, bank[reference_rows.cpu()], **view).projection


def _own_scores(method: str, per_view: list) -> torch.Tensor:
    """A rotation method's anomaly score over the views (higher = more anomalous), float64: CSI's, FIRM's and
    masked contrastive's mean over the views; self-OECL's −‖mean projection over the views‖₂ (the paper's score,
    negated)."""
    if method != "self_oecl":
        return torch.stack(per_view).double().mean(dim=0)
    return -norm_normality(per_view)
