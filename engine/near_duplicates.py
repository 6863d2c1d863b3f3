"""Near duplicates: different files that show the same picture (a re-encoded JPEG, a slight crop, a resize).

Each readable image gets two 64-bit perceptual hashes (ImageHash): `phash` (the signs of the 8 × 8 lowest
frequencies of a 32 × 32 DCT) and `dhash` (whether each pixel of a 9 × 8 thumbnail is brighter than its right
neighbour). Two images are near duplicates when both Hamming distances are small:

    phash distance <= PHASH_DISTANCE and dhash distance <= DHASH_DISTANCE

Measured (docs/curation.md): a JPEG re-encode at quality 70 moves phash by at most 4 bits, a 95 %
centre crop resized back by at most 14 (99th percentile 12) on 2,000 CIFAR-10 images at 96 px; 95.7 % of
crop + re-encode pairs pass phash <= 10, 99 % pass phash <= 12 and dhash <= 12. Among the 2 million pairs of
unrelated CIFAR-10 images, 4 pass both (30 pass phash <= 12 alone): the second hash is the cheap check that
keeps chance matches of one hash out. Groups are stars: the first
ungrouped image leads a group of the ungrouped images close to it, so every member is close to its group's
first file (a chain A~B~C with A and C further apart is two groups' worth, not one), each in the callers' order.

The pairs are found without a Python loop over pairs: identical hash pairs share one bucket, and the distinct
hashes are compared block by block with vectorised XOR and popcount (`np.bitwise_count`), only above the
diagonal, in cache-sized tiles: 40,000 distinct images are 8·10⁸ comparisons, 13 s on one shared, busy core.
"""

from __future__ import annotations

from collections.abc import Sequence

import imagehash
import numpy as np
from PIL import Image

PHASH_DISTANCE = 12  # bits of 64: at most this many differ between a near duplicate's phash and its original's
DHASH_DISTANCE = 12  # bits of 64, for the dhash check every phash match must also pass
FLAT_STD = 2.0  # grey levels: images flatter than this get no perceptual hash
BLOCK, TILE = 256, 2048  # distinct hashes compared at once: (BLOCK, TILE) uint64 buffers, 4 MB


def perceptual_hashes(pixels: np.ndarray) -> tuple[str, str] | tuple[None, None]:
    """(phash, dhash) of one decoded (C, S, S) uint8 image, each 16 hex digits (64 bits); (None, None) for a
    flat image (standard deviation under FLAT_STD grey levels), whose hashes are noise or all zeros: every
    blank image would be a near duplicate of every other."""
    if float(pixels.std()) < FLAT_STD:
        return None, None
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    return str(imagehash.phash(image)), str(imagehash.dhash(image))


def hash_distance(a: str, b: str) -> int:
    """Hamming distance in bits between two hex hashes of the same length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def near_duplicate_groups(
    keys: Sequence[str],
    phashes: Sequence[str],
    dhashes: Sequence[str],
    *,
    phash_distance: int = PHASH_DISTANCE,
    dhash_distance: int = DHASH_DISTANCE,
) -> list[list[str]]:
    """Groups (two or more keys) of images whose hashes are within both distances, each in `keys`' order,
    the groups ordered by their first member's place in `keys`."""
    if not len(keys) == len(phashes) == len(dhashes):
        raise ValueError("one phash and one dhash for every key")
    # identical (phash, dhash) pairs are one bucket: compared once, every member joins the bucket's group
    buckets: dict[tuple[str, str], int] = {}
    bucket_of = np.array([buckets.setdefault((p, d), len(buckets)) for p, d in zip(phashes, dhashes, strict=True)])
    phash = np.array([int(p, 16) for p, _ in buckets], dtype=np.uint64)  # (m,) one per distinct pair
    dhash = np.array([int(d, 16) for _, d in buckets], dtype=np.uint64)
    m = len(phash)
    neighbours: list[list[int]] = [[] for _ in range(m)]

    # Tiles of BLOCK × TILE comparisons into reused buffers: a fresh temporary of that size is a fresh mapping
    # from the OS each time, and its page faults cost twenty times the arithmetic.
    xor = np.empty((BLOCK, TILE), dtype=np.uint64)
    bits = np.empty((BLOCK, TILE), dtype=np.uint8)
    close = np.empty((BLOCK, TILE), dtype=bool)
    for row in range(0, m, BLOCK):
        block = phash[row : row + BLOCK, None]  # (b, 1) against the phashes from `row` on: the upper triangle
        for col in range(row, m, TILE):
            tile = phash[None, col : col + TILE]  # (1, t)
            b, t = len(block), tile.shape[1]
            np.bitwise_xor(block, tile, out=xor[:b, :t])
            np.bitwise_count(xor[:b, :t], out=bits[:b, :t])  # differing bits
            np.less_equal(bits[:b, :t], phash_distance, out=close[:b, :t])
            if not close[:b, :t].any():
                continue
            rows, cols = np.nonzero(close[:b, :t])
            rows, cols = rows + row, cols + col
            keep = cols > rows  # each pair once, no image with itself
            rows, cols = rows[keep], cols[keep]
            same = np.bitwise_count(dhash[rows] ^ dhash[cols]) <= dhash_distance
            for first, second in zip(rows[same].tolist(), cols[same].tolist(), strict=True):
                neighbours[first].append(second)
                neighbours[second].append(first)
    # Star groups, not connected components: the first ungrouped image (in `keys`' order; buckets are numbered
    # in that order) leads a group of the ungrouped images close to it. Every member is then within both
    # distances of its group's first file, as the Data page says; components chain look-alikes instead (on
    # scikit-learn's digits one component held 1,313 of 1,797 images).
    leader = np.full(m, -1)
    for i in range(m):
        if leader[i] < 0:
            leader[i] = i
            for j in neighbours[i]:
                if leader[j] < 0:
                    leader[j] = i
    members: dict[int, list[str]] = {}
    for key, bucket in zip(keys, bucket_of.tolist(), strict=True):
        members.setdefault(int(leader[bucket]), []).append(key)
    return [group for group in members.values() if len(group) > 1]
