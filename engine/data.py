"""The small vocabulary every data source speaks: a sample reference, a decoded image set, a skip.

An item of a dataset is an image plus its identity: a stable `sample_id`, where it came from, an
optional label and an optional split. Sources list `SampleRef`s cheaply; decoding happens once, into
an `ImageSet` of uint8 pixels at the run's image size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


class DataError(ValueError):
    """A user-facing data problem (missing folder, empty selection, ...): one clear line, no traceback."""


@dataclass(frozen=True)
class SampleRef:
    """Identity of one image in a source; cheap to list, stored with every score."""

    sample_id: str  # stable across runs: relative path, "train/12", "digits/5"
    location: str  # human-readable origin: a path, "archive.zip:train/cat/1.jpg", "file.npz:test[3]"
    label: str | None = None  # labels are strings everywhere ("1", "no"), so folder names and ints compare alike
    split: str | None = None  # "train", "val", "test" or None when the source has no splits


@dataclass(frozen=True)
class Skipped:
    """An image that could not be used, and why (reported, never fatal)."""

    ref: SampleRef
    reason: str


@dataclass
class ImageSet:
    """Decoded images of one size, in memory, aligned with their references."""

    pixels: torch.Tensor  # (M, C, S, S) uint8; C = 1 when every image is greyscale, else 3
    refs: list[SampleRef]

    def __post_init__(self) -> None:
        if self.pixels.dtype != torch.uint8 or self.pixels.dim() != 4:
            raise ValueError(f"pixels must be (M, C, S, S) uint8, got {tuple(self.pixels.shape)} {self.pixels.dtype}")
        if len(self.refs) != self.pixels.shape[0]:
            raise ValueError(f"{len(self.refs)} refs for {self.pixels.shape[0]} images")

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def ids(self) -> list[str]:
        return [r.sample_id for r in self.refs]

    @property
    def labels(self) -> list[str | None]:
        return [r.label for r in self.refs]

    def subset(self, indices: Sequence[int]) -> ImageSet:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return ImageSet(self.pixels.index_select(0, index), [self.refs[i] for i in index.tolist()])
