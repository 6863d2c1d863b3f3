"""Exact copies among decoded images: the same pixels after decoding and resizing.

Leave-one-out scoring (a training image scored against its own bank) must leave out every copy of the
image, not only the image itself: a byte-identical copy elsewhere in the bank is a nearest neighbour at
distance 0, and the image would rank as the most normal of all merely for being duplicated. Pixels, not
file bytes: they are what the model sees (a re-saved copy is the same input), and a bundle keeps the
training images' pixels, not their files.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def pixel_digest(image: np.ndarray | torch.Tensor) -> bytes:
    """A digest of one (C, S, S) uint8 image's shape and pixels."""
    array = image.cpu().numpy() if isinstance(image, torch.Tensor) else image
    return hashlib.blake2b(str(array.shape).encode() + np.ascontiguousarray(array).tobytes(), digest_size=16).digest()


def copy_groups(pixels: torch.Tensor | np.ndarray) -> np.ndarray:
    """(n,) int64 copy group of each of n images (n, C, S, S): the first row with the same pixels.

    Rows with the same group are exact copies of each other; a row without a copy is its own group.
    """
    if isinstance(pixels, torch.Tensor):
        pixels = pixels.cpu().numpy()
    first: dict[bytes, int] = {}
    return np.array([first.setdefault(pixel_digest(image), row) for row, image in enumerate(pixels)], dtype=np.int64)
