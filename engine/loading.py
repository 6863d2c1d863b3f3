"""Decode a source's images into memory, in parallel, reporting what could not be used.

`load_images` decodes a list of refs into one `ImageSet`; `load_data` is the whole path from a
`DataConfig`: open the source, select, decode the training and scored images once, split them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from engine.config import DataConfig
from engine.data import DataError, ImageSet, SampleRef, Skipped
from engine.images import UnreadableImage, decode
from engine.selection import select
from engine.sources import Source, open_source

Progress = Callable[[int, int], None]  # (done, total) images
MIN_TRAIN = 2  # contrastive training needs a second image to contrast with


@dataclass
class LoadedData:
    """The decoded images of one run: what trains, what is scored, and what was skipped."""

    source: Source
    train: ImageSet
    score: ImageSet
    score_in_train: np.ndarray  # (len(score),) int64: index of each scored image in `train`, or -1
    skipped: list[Skipped]  # unreadable selected images, and entries the source rejected while listing


def load_images(
    source: Source,
    refs: Sequence[SampleRef],
    *,
    image_size: int,
    crop_fraction: float = 1.0,
    max_pixels: int = 100_000_000,
    workers: int | None = None,
    on_progress: Progress | None = None,
) -> tuple[ImageSet, list[Skipped]]:
    """Decode `refs` into pixels (M, C, S, S) uint8, in ref order, skipping unreadable images.

    C = 1 when every decoded image is greyscale, else 3 (greys are replicated). Threads suffice: PIL
    releases the GIL while decoding and resizing. `workers` defaults to the number of CPUs.
    `on_progress(done, total)` is called about every 1 % and once at the end.
    """

    def decode_one(ref: SampleRef) -> np.ndarray | str:
        try:
            return decode(source.read(ref), image_size, crop_fraction, max_pixels)
        except UnreadableImage as error:
            return error.reason

    total = len(refs)
    step = max(1, total // 100)
    decoded: list[np.ndarray] = []
    kept: list[SampleRef] = []
    skipped: list[Skipped] = []
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for done, (ref, result) in enumerate(zip(refs, pool.map(decode_one, refs), strict=True), start=1):
            if isinstance(result, str):
                skipped.append(Skipped(ref, result))
            else:
                decoded.append(result)
                kept.append(ref)
            if on_progress is not None and (done % step == 0 or done == total):
                on_progress(done, total)
    channels = 1 if all(pixels.shape[0] == 1 for pixels in decoded) else 3
    pixels = np.empty((len(decoded), channels, image_size, image_size), dtype=np.uint8)  # (M, C, S, S)
    for i, image in enumerate(decoded):
        pixels[i] = image  # broadcasting (1, S, S) into (3, S, S) replicates a grey image
    return ImageSet(torch.from_numpy(pixels), kept), skipped


def load_data(config: DataConfig, on_progress: Progress | None = None) -> LoadedData:
    """Open `config.source`, select training and scored images, and decode their union once.

    Raises `DataError` when the source cannot be opened, the selection is empty, every training image
    (or every scored image) turned out unreadable, or fewer than `MIN_TRAIN` images can train.
    """
    source = open_source(config.source)
    refs = source.refs()
    selection = select(refs, config)
    union = sorted(set(selection.train) | set(selection.score))
    images, skipped = load_images(
        source,
        [refs[i] for i in union],
        image_size=config.image_size,
        crop_fraction=config.crop_fraction,
        max_pixels=config.max_pixels,
        on_progress=on_progress,
    )
    position = {ref.sample_id: row for row, ref in enumerate(images.refs)}  # sample_id -> row in `images`
    train_rows = [position[refs[i].sample_id] for i in selection.train if refs[i].sample_id in position]
    score_rows = [position[refs[i].sample_id] for i in selection.score if refs[i].sample_id in position]
    if not train_rows:
        raise DataError(f"no trainable images: {_why_none([refs[i] for i in selection.train], 'training', skipped)}")
    if not score_rows:
        raise DataError(f"no images to score: {_why_none([refs[i] for i in selection.score], 'scored', skipped)}")
    if len(train_rows) < MIN_TRAIN:
        wanted = len(selection.train)
        unreadable = f" ({wanted - len(train_rows)} of {wanted} were unreadable)" if wanted > len(train_rows) else ""
        raise DataError(
            f"only one trainable image ({images.refs[train_rows[0]].sample_id}){unreadable}: training compares "
            f"images with each other and needs at least {MIN_TRAIN}"
        )
    train_index = {row: i for i, row in enumerate(train_rows)}
    score_in_train = np.array([train_index.get(row, -1) for row in score_rows], dtype=np.int64)
    return LoadedData(
        source=source,
        train=images.subset(train_rows),
        score=images.subset(score_rows),
        score_in_train=score_in_train,
        skipped=skipped + source.rejected,
    )


def _why_none(wanted: list[SampleRef], role: str, skipped: list[Skipped]) -> str:
    """'all 3 training images were skipped (first: a.png: truncated image data)'."""
    ids = {ref.sample_id for ref in wanted}
    first = next(s for s in skipped if s.ref.sample_id in ids)
    return f"all {len(wanted)} {role} images were skipped (first: {first.ref.sample_id}: {first.reason})"
