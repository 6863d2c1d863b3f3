"""What a source holds, without training anything: per-sample checks, duplicates and counts.

Backs the CLI's `inspect` command and the per-sample quality flags stored later: a content hash, the
image's size and mode from its header, whether it decodes (and why not), its perceptual hashes,
exact-duplicate groups, near-duplicate groups (`engine.near_duplicates`), and counts by label and split.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from engine.data import SampleRef, Skipped
from engine.images import UnreadableImage, decode, open_image
from engine.near_duplicates import MIN_SIDE, near_duplicate_groups, perceptual_hashes, thumbnail
from engine.sources import Source

VERIFY_SIDE = 64  # pixels: images are verified (JPEGs at a reduced DCT scale, much faster) and hashed at this side


@dataclass(frozen=True)
class SampleInfo:
    """One sample's checks. Sizes are pixels; `sha256` hashes the file's bytes (array sources: the array's)."""

    ref: SampleRef
    sha256: str | None  # None when the bytes could not be read (missing file)
    num_bytes: int | None
    width: int | None  # from the header, also for images too large or too broken to decode
    height: int | None
    mode: str | None  # PIL mode as stored ("L", "RGB", "I;16", "P", ...)
    readable: bool
    reason: str | None  # why not readable, as in `Skipped.reason`
    phash: str | None = None  # perceptual hashes (16 hex digits) of a readable image, `engine.near_duplicates`
    dhash: str | None = None
    # the grey thumbnail near-duplicate candidates are checked on (engine.near_duplicates); not stored
    thumb: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass
class Inventory:
    """Everything `inspect` shows about a source."""

    kind: str
    location: str
    label_origin: str
    split_origin: str
    samples: list[SampleInfo]  # in the source's ref order
    duplicates: list[list[str]]  # groups of sample_ids with byte-identical content, each group sorted
    # groups of readable sample_ids that look alike (perceptual hashes) but differ in content: one sample per
    # exact-duplicate group takes part (its first), each group in the source's order
    near_duplicates: list[list[str]]
    by_label: dict[str | None, int]
    by_split: dict[str | None, int]
    by_split_label: dict[tuple[str | None, str | None], int]
    rejected: list[Skipped]  # entries the source found but does not offer (unsafe zip members)

    @property
    def unreadable(self) -> list[SampleInfo]:
        return [s for s in self.samples if not s.readable]


def inventory(
    source: Source,
    *,
    max_pixels: int = 100_000_000,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Inventory:
    """Check every sample of `source` in parallel; images over `max_pixels` are flagged, not decoded."""
    refs = source.refs()
    total = len(refs)
    step = max(1, total // 100)
    samples = []
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for done, info in enumerate(pool.map(lambda ref: _check(source, ref, max_pixels), refs), start=1):
            samples.append(info)
            if on_progress is not None and (done % step == 0 or done == total):
                on_progress(done, total)
    groups: dict[str, list[str]] = defaultdict(list)
    for info in samples:
        if info.sha256 is not None:
            groups[info.sha256].append(info.ref.sample_id)
    duplicates = sorted(sorted(ids) for ids in groups.values() if len(ids) > 1)
    copies = {key for group in duplicates for key in group[1:]}  # an exact copy is already flagged as one
    hashed = [s for s in samples if s.phash is not None and s.dhash is not None and s.ref.sample_id not in copies]
    near = near_duplicate_groups(
        [s.ref.sample_id for s in hashed],
        [s.phash for s in hashed],
        [s.dhash for s in hashed],
        thumbnails=np.stack([s.thumb for s in hashed]) if hashed else None,
    )
    return Inventory(
        kind=source.kind,
        location=source.location,
        label_origin=source.label_origin,
        split_origin=source.split_origin,
        samples=samples,
        duplicates=duplicates,
        near_duplicates=near,
        by_label=dict(Counter(r.label for r in refs)),
        by_split=dict(Counter(r.split for r in refs)),
        by_split_label=dict(Counter((r.split, r.label) for r in refs)),
        rejected=list(source.rejected),
    )


def _check(source: Source, ref: SampleRef, max_pixels: int) -> SampleInfo:
    try:
        data = source.read_bytes(ref)
    except UnreadableImage as error:
        return SampleInfo(ref, None, None, None, None, None, False, error.reason)
    if data is None:  # an array source: the pixels are the content
        array = np.ascontiguousarray(source.read(ref))
        mode = "RGB" if array.ndim == 3 and array.shape[2] == 3 else "L"
        digest = hashlib.sha256(array.tobytes()).hexdigest()
        width, height = (array.shape[1], array.shape[0]) if array.ndim >= 2 else (None, None)
        try:  # the same checks a run makes (all NaN, not numbers)
            pixels = decode(array, VERIFY_SIDE, max_pixels=max_pixels)
        except UnreadableImage as error:
            return SampleInfo(ref, digest, array.nbytes, width, height, mode, False, error.reason)
        return SampleInfo(ref, digest, array.nbytes, width, height, mode, True, None, *_looks(pixels, width, height))
    digest = hashlib.sha256(data).hexdigest()
    width = height = mode = None
    try:
        image = open_image(data)
        width, height, mode = image.width, image.height, image.mode
        pixels = decode(image, VERIFY_SIDE, max_pixels=max_pixels)  # (C, 64, 64) uint8, as a run decodes it
    except UnreadableImage as error:
        return SampleInfo(ref, digest, len(data), width, height, mode, False, error.reason)
    return SampleInfo(ref, digest, len(data), width, height, mode, True, None, *_looks(pixels, width, height))


def _looks(
    pixels: np.ndarray, width: int | None, height: int | None
) -> tuple[str | None, str | None, np.ndarray | None]:
    """(phash, dhash, thumbnail) of a readable image, or nothing for one under MIN_SIDE pixels a side."""
    if min(width or MIN_SIDE, height or MIN_SIDE) < MIN_SIDE:
        return None, None, None
    phash, dhash = perceptual_hashes(pixels)
    return phash, dhash, thumbnail(pixels) if phash is not None else None
