"""One run end to end, the shape a worker and the CLI call: config in, one callback, results out.

    dataset → select → decode → train → embed + score (TTA) → metrics

`train_run` trains and scores; `score_run` scores new images with a finished run's model and
training bank, without retraining. Both report through one callback that receives either a
`StepReport` (training) or a `Phase` (loading, scoring); returning False cancels.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.baseline import pixel_nnd
from engine.checkpoint import CheckpointStore
from engine.classical import score_classical
from engine.config import CLASSICAL_METHODS, DataConfig, RunConfig, ScoreConfig, TrainConfig
from engine.copies import pixel_digest
from engine.data import DataError, ImageSet, Skipped
from engine.device import describe, runs_in_bfloat16
from engine.encoder_choice import resolve_auto
from engine.loading import LoadedData, load_data, load_images
from engine.metrics import anomaly_targets, auroc, context_silhouette
from engine.sources import open_source
from engine.train import StepReport, TrainedModel, TrainingCancelled, train
from engine.tta import ScoreResult, score_images


@dataclass(frozen=True)
class Phase:
    """Progress of a phase other than training steps."""

    name: str  # "loading" or "scoring"
    done: int
    total: int


ProgressCallback = Callable[["StepReport | Phase"], "bool | None"]


@dataclass
class RunResult:
    """Everything a run produced; `engine.artifacts` writes it to disk, the worker to the database."""

    config: RunConfig
    trained: TrainedModel | None  # None for a classical reference (engine.classical): nothing was trained
    bank: ImageSet  # the training images (uint8), kept so the model can score new images later
    scored: ImageSet
    scores: ScoreResult
    skipped: list[Skipped]
    metrics: dict[str, float | int | str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreRunResult:
    """What `score_run` produced: the images scored, their scores, the images skipped, the metrics."""

    scored: ImageSet  # the readable images `data` selected, in the order of `scores`
    scores: ScoreResult
    skipped: list[Skipped]
    metrics: dict[str, float | int | str | None]


def _relay(on_progress: ProgressCallback | None, name: str) -> Callable[[int, int], bool | None] | None:
    if on_progress is None:
        return None
    return lambda done, total: on_progress(Phase(name, done, total))


def evaluate(
    scored: ImageSet,
    scores: ScoreResult,
    normal_label: str | None,
    *,
    bank: ImageSet | None = None,
    query_in_bank: np.ndarray | None = None,
    clusters: bool = True,
) -> dict[str, float | int | str | None]:
    """AUROC of both scores where labels allow it, and the context clusters' silhouette (None without
    `clusters`: a classical reference has no trained context clusters).

    With the training `bank`, also `auroc_pixels`: the raw-pixel 1-NN reference (engine.baseline) on the
    same images, the floor a trained encoder has to beat for training to have paid off.
    """
    targets = anomaly_targets(scored.labels, normal_label)
    metrics: dict[str, float | int | str | None] = {
        "n_scored": len(scored),
        "n_anomalous": None if targets is None else int(targets.sum()),
        "auroc_nnd": None if targets is None else auroc(targets, scores.s_nnd),
        "auroc_lh": None if targets is None else auroc(targets, scores.s_lh),
        "auroc_pixels": None,
    }
    if targets is not None and bank is not None:
        pixel_scores = pixel_nnd(bank.pixels, scored.pixels, query_in_bank)
        metrics["auroc_pixels"] = None if pixel_scores is None else auroc(targets, pixel_scores)
    has_clusters = clusters and len(scored) >= 2
    metrics["silhouette"] = context_silhouette(scores.features, scores.context_features) if has_clusters else None
    return metrics


def train_run(
    config: RunConfig,
    *,
    on_progress: ProgressCallback | None = None,
    checkpoints: CheckpointStore | None = None,
    loaded: LoadedData | None = None,
    on_settled: Callable[[TrainConfig, int], None] | None = None,
) -> RunResult:
    """Load and select the data, train, score, evaluate. Raises DataError on unusable data,
    TrainingCancelled when the callback returns False, NonFiniteLoss on a diverging loss.

    `on_settled`: called once the data is loaded with the training config as it will train, every `auto` resolved,
    and the number of training images (the worker shows a queued job's chosen batch, encoder and context while it
    trains; a batch larger than the training set trains as one batch of them all, which sets the chance level of
    L_content); not for the classical references, which train nothing.

    `loaded`: `load_data(config.data)` already decoded by the caller, which then is not decoded again
    (benchmarks/reproduction runs many seeds and methods on one dataset and decodes it once).
    """
    started = time.perf_counter()
    if loaded is None:
        loaded = load_data(config.data, on_progress=_relay(on_progress, "loading"))
    # `auto` becomes a context and an encoder here, so the result's config, the saved model and the summary name the
    # ones used
    config = dataclasses.replace(config, train=resolve_auto(config.train, loaded.train.pixels))
    if config.train.method in CLASSICAL_METHODS:
        return _classical_run(config, loaded, on_progress, started)
    if on_settled is not None:
        on_settled(config.train, len(loaded.train))
    trained = train(loaded.train.pixels, config.train, on_step=on_progress, checkpoints=checkpoints)
    scores = score_images(
        trained,
        loaded.train.pixels,
        loaded.score.pixels,
        config.score,
        query_in_bank=loaded.score_in_train,
        on_progress=_relay(on_progress, "scoring"),
    )
    metrics = evaluate(
        loaded.score, scores, config.data.normal_label, bank=loaded.train, query_in_bank=loaded.score_in_train
    )
    metrics.update(
        _run_facts(config, loaded, started),
        device=describe(trained.device, runs_in_bfloat16(trained.device, trained.config)),
        train_s=trained.wall_s,
        score_s=scores.wall_s,
        images_per_s=trained.images_per_s,
    )
    return RunResult(config, trained, loaded.train, loaded.score, scores, loaded.skipped, metrics)


def _classical_run(
    config: RunConfig, loaded: LoadedData, on_progress: ProgressCallback | None, started: float
) -> RunResult:
    """A classical reference (engine.classical): fit on the training images (its "training": no epochs, no
    model, no checkpoint), score, evaluate like a learned run."""
    relay = None if on_progress is None else (lambda phase, done, total: on_progress(Phase(phase, done, total)))
    scores, fit_s = score_classical(
        loaded.train.pixels,
        loaded.score.pixels,
        config.train,
        config.score,
        query_in_bank=loaded.score_in_train,
        on_progress=relay,
    )
    metrics = evaluate(
        loaded.score,
        scores,
        config.data.normal_label,
        bank=loaded.train,
        query_in_bank=loaded.score_in_train,
        clusters=False,
    )
    metrics.update(
        _run_facts(config, loaded, started),
        device="cpu",
        epochs_trained=0,
        train_s=fit_s,
        score_s=scores.wall_s,
        images_per_s=None,
    )
    return RunResult(config, None, loaded.train, loaded.score, scores, loaded.skipped, metrics)


def _run_facts(config: RunConfig, loaded: LoadedData, started: float) -> dict[str, Any]:
    """What every run's metrics say of it, learned or classical: the context, encoder, rotation weight, batch size and
    precision it used (what `auto` became), the images it trained on and skipped, its wall time."""
    learned = config.train.method not in CLASSICAL_METHODS
    return {
        "context": config.train.context,
        "encoder": config.train.encoder if learned else None,
        "rotation_weight": config.train.rotation_weight if learned else None,
        "batch_size": config.train.batch_size if learned else None,
        "precision": config.train.precision if learned else None,
        "n_train": len(loaded.train),
        "n_skipped": len(loaded.skipped),
        "wall_s": time.perf_counter() - started,
    }


def score_run(
    trained: TrainedModel,
    bank: ImageSet,
    data: DataConfig,
    score: ScoreConfig,
    *,
    bank_source: str | None = None,
    on_progress: ProgressCallback | None = None,
    on_overlap: Callable[[int, int], object] | None = None,
) -> ScoreRunResult:
    """Score the images `data` selects (its score_split, or every image) with a trained model.

    No retraining: the model's own training images are the bank. A new image that is a training image
    (the same sample of the bank's own source `bank_source`, or the same pixels after decoding and
    resizing, wherever it came from) is scored leave-one-out, so it is not its own nearest neighbour;
    `on_overlap(count, total)` hears how many before scoring starts, and metrics["n_training_images"]
    counts them.
    """
    started = time.perf_counter()
    if bank.pixels.shape[-1] != trained.image_size:
        raise ValueError(f"bank images are {bank.pixels.shape[-1]} px but the model expects {trained.image_size}")
    source = open_source(data.source)
    refs = [r for r in source.refs() if data.score_split is None or r.split == data.score_split]
    if not refs:
        raise DataError(
            f"no images to score in {data.source}" + (f" split '{data.score_split}'" if data.score_split else "")
        )
    queries, skipped = load_images(
        source,
        refs,
        image_size=trained.image_size,
        crop_fraction=data.crop_fraction,
        max_pixels=data.max_pixels,
        on_progress=_relay(on_progress, "loading"),
    )
    if len(queries) == 0:
        first = skipped[0]
        raise DataError(
            f"no readable images to score: all {len(refs)} were skipped (first: {first.ref.sample_id}: {first.reason})"
        )
    in_bank = np.full(len(queries), -1, dtype=np.int64)
    if bank_source is not None and bank_source == data.source:
        rows = {sample_id: i for i, sample_id in enumerate(bank.ids)}
        in_bank = np.array([rows.get(s, -1) for s in queries.ids], dtype=np.int64)
    # Pixels, not file bytes (engine/copies.py); scoring leaves out the whole copy group of the row found
    by_pixels = {pixel_digest(image): row for row, image in enumerate(bank.pixels)}
    same = np.array([by_pixels.get(pixel_digest(image), -1) for image in queries.pixels], dtype=np.int64)
    in_bank = np.where(in_bank >= 0, in_bank, same)
    overlap = int((in_bank >= 0).sum())
    if on_overlap is not None:
        on_overlap(overlap, len(queries))
    result = score_images(
        trained,
        bank.pixels,
        queries.pixels,
        score,
        query_in_bank=in_bank,
        score_train=True,
        on_progress=_relay(on_progress, "scoring"),
    )
    metrics = evaluate(queries, result, data.normal_label, bank=bank, query_in_bank=in_bank)
    metrics.update(
        n_skipped=len(skipped),
        n_training_images=overlap,
        device=describe(trained.device, runs_in_bfloat16(trained.device, trained.config)),
        wall_s=time.perf_counter() - started,
    )
    return ScoreRunResult(queries, result, skipped, metrics)


__all__ = ["Phase", "RunResult", "ScoreRunResult", "TrainingCancelled", "evaluate", "score_run", "train_run"]
