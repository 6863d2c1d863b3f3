"""Near duplicates: different files that show the same picture (a re-encoded JPEG, a slight crop, a resize).

Each readable image gets two 64-bit perceptual hashes (ImageHash): `phash` (the signs of the 8 × 8 lowest
frequencies of a 32 × 32 DCT) and `dhash` (whether each pixel of a 9 × 8 thumbnail is brighter than its right
neighbour). Two images are near duplicates when both Hamming distances are small:

    phash distance <= PHASH_DISTANCE and dhash distance <= DHASH_DISTANCE

Measured (docs/curation.md): a JPEG re-encode at quality 70 moves phash by at most 4 bits, a 95 %
centre crop resized back by at most 14 (99th percentile 12) on 2,000 CIFAR-10 images at 96 px; 95.7 % of
crop + re-encode pairs pass phash <= 10, 99 % pass phash <= 12 and dhash <= 12. Among the 2 million pairs of
unrelated CIFAR-10 images, 4 pass both (30 pass phash <= 12 alone): the second hash is the cheap check that
keeps chance matches of one hash out.

On sets of one kind of image the hashes alone are not enough: at 28 px any two chest X-rays are about as
close as an X-ray and its crop (PneumoniaMNIST: 76 % of 2,000 images fell into hash groups). So a pair the
hashes find must also look alike pixel by pixel: the correlation distance (1 − Pearson r) of their 32 × 32 grey
thumbnails must be at most the set's own limit, PIXEL_SHARE × the 1st percentile of that distance between two
images of the set (a seeded sample of up to PIXEL_SAMPLE), kept within [PIXEL_FLOOR, PIXEL_CEILING]. A copy is
then far closer to its original than nearly every pair of distinct images is; re-encodes sit at ≤ 0.01, 95 %
crops at 0.02–0.08 on 28–32 px sets. Images under MIN_SIDE pixels a side get no hash at all: at 8 × 8 two
people's handwritten 3s are as alike as a copy, and nothing in the pixels tells them apart.

Groups are stars: the first ungrouped image (in the callers' order) leads a group of the ungrouped images close
to it, so every member is close to its group's first file, as the Data page says; connected components would
chain look-alikes (on scikit-learn's digits one component held 1,313 of 1,797 images).

The pairs are found without a Python loop over pairs: identical hash pairs share one bucket, and the distinct
hashes are compared block by block with vectorised XOR and popcount (`np.bitwise_count`), only above the
diagonal, in cache-sized tiles: 40,000 distinct images are 8·10⁸ comparisons, 13 s on one shared, busy core.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

PHASH_DISTANCE = 12  # bits of 64: at most this many differ between a near duplicate's phash and its original's
DHASH_DISTANCE = 12  # bits of 64, for the dhash check every phash match must also pass
FLAT_STD = 2.0  # grey levels: images flatter than this get no perceptual hash
MIN_SIDE = 16  # pixels: smaller images get no perceptual hash (look-alikes and copies cannot be told apart)
THUMB = 32  # pixels a side of the grey thumbnails the pixel check compares
PIXEL_SHARE = 0.4  # of the set's 1st-percentile distance between two images: a near duplicate is closer still
PIXEL_FLOOR, PIXEL_CEILING = 0.03, 0.2  # bounds of that limit (correlation distance, 0 = identical)
PIXEL_SAMPLE = 1000  # images whose pairwise distances set the limit
BLOCK, TILE = 256, 2048  # distinct hashes compared at once: (BLOCK, TILE) uint64 buffers, 4 MB


def perceptual_hashes(pixels: np.ndarray) -> tuple[str, str] | tuple[None, None]:
    """(phash, dhash) of one decoded (C, S, S) uint8 image, each 16 hex digits (64 bits); (None, None) for a
    flat image (standard deviation under FLAT_STD grey levels), whose hashes are noise or all zeros: every
    blank image would be a near duplicate of every other."""
    if float(pixels.std()) < FLAT_STD:
        return None, None
    import imagehash  # here: the pages read this module's constants and should not load ImageHash (and SciPy)

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
    thumbnails: np.ndarray | None = None,
) -> list[list[str]]:
    """Groups (two or more keys) of images whose hashes are within both distances of their group's first
    member — and, given `thumbnails` ((n, THUMB, THUMB) uint8, `thumbnail`), whose pixels are within the set's
    limit of it too — each in `keys`' order, the groups ordered by their first member's place in `keys`."""
    if not len(keys) == len(phashes) == len(dhashes):
        raise ValueError("one phash and one dhash for every key")
    if thumbnails is not None and len(thumbnails) != len(keys):
        raise ValueError("one thumbnail for every key")
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
    images_of: list[list[int]] = [[] for _ in range(m)]  # a bucket's images, in keys' order
    for image, bucket in enumerate(bucket_of.tolist()):
        images_of[bucket].append(image)
    limit = pixel_limit(thumbnails) if thumbnails is not None else None
    leader = np.full(len(keys), -1)
    for i in range(len(keys)):
        if leader[i] >= 0:
            continue
        leader[i] = i
        bucket = int(bucket_of[i])
        candidates = [j for b in (bucket, *neighbours[bucket]) for j in images_of[b] if leader[j] < 0]
        if candidates and limit is not None:
            close_enough = pixel_distances(thumbnails, i, candidates) <= limit
            candidates = [j for j, keep in zip(candidates, close_enough.tolist(), strict=True) if keep]
        leader[candidates] = i
    members: dict[int, list[str]] = {}
    for key, group in zip(keys, leader.tolist(), strict=True):
        members.setdefault(group, []).append(key)
    return [group for group in members.values() if len(group) > 1]


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """The (THUMB, THUMB) grey uint8 thumbnail of one decoded (C, S, S) uint8 image, for the pixel check."""
    grey = pixels.mean(axis=0) if pixels.shape[0] > 1 else pixels[0]
    image = Image.fromarray(np.asarray(grey, dtype=np.uint8)).resize((THUMB, THUMB), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _unit(thumbnails: np.ndarray) -> np.ndarray:
    """Each thumbnail as a centred vector of length 1 (float32), so a dot product is Pearson's r."""
    x = thumbnails.reshape(len(thumbnails), -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def pixel_distances(thumbnails: np.ndarray, i: int, others: Sequence[int]) -> np.ndarray:
    """1 − Pearson r between thumbnail i and each of `others`."""
    vectors = _unit(thumbnails[[i, *others]])
    return 1.0 - vectors[1:] @ vectors[0]


def pixel_limit(thumbnails: np.ndarray, seed: int = 0) -> float:
    """The largest pixel distance at which two images of this set count as near duplicates (module docstring)."""
    n = len(thumbnails)
    if n < 3:
        return PIXEL_FLOOR
    sample = np.random.default_rng(seed).permutation(n)[:PIXEL_SAMPLE]
    vectors = _unit(thumbnails[np.sort(sample)])
    distances = 1.0 - (vectors @ vectors.T)[np.triu_indices(len(vectors), 1)]
    return float(np.clip(PIXEL_SHARE * np.percentile(distances, 1), PIXEL_FLOOR, PIXEL_CEILING))
