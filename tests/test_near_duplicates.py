"""Perceptual hashes and near-duplicate groups (engine/near_duplicates.py), and the inventory that uses them."""

from __future__ import annotations

import numpy as np
import pytest

from engine.images import decode
from engine.inventory import inventory
from engine.near_duplicates import (
    DHASH_DISTANCE,
    PHASH_DISTANCE,
    PIXEL_CEILING,
    PIXEL_FLOOR,
    hash_distance,
    near_duplicate_groups,
    perceptual_hashes,
    pixel_limit,
    thumbnail,
)
from engine.sources import open_source
from tests.curation_folder import EXACT, NEAR, UNREADABLE, centre_crop, curation_folder, digit, jpeg


def hashes(image) -> tuple[str, str]:
    return perceptual_hashes(decode(image if isinstance(image, bytes) else _png(image), 64))


def _png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("index", range(10))
def test_a_reencoded_jpeg_and_a_95_percent_crop_stay_within_both_distances(index):
    original = hashes(digit(index))
    for variant in (hashes(jpeg(digit(index))), hashes(centre_crop(digit(index)))):
        assert hash_distance(original[0], variant[0]) <= PHASH_DISTANCE
        assert hash_distance(original[1], variant[1]) <= DHASH_DISTANCE


def test_unrelated_digits_form_no_group_and_the_planted_variants_join_their_originals():
    keys, phashes, dhashes = [], [], []
    for index in range(10):
        for name, image in (("", digit(index)), ("q70", jpeg(digit(index))), ("crop", centre_crop(digit(index)))):
            p, d = hashes(image)
            keys.append(f"{index}{name}")
            phashes.append(p)
            dhashes.append(d)
    groups = near_duplicate_groups(keys, phashes, dhashes)
    assert sorted(groups) == sorted([[f"{i}", f"{i}q70", f"{i}crop"] for i in range(10)])
    originals = [i for i, key in enumerate(keys) if key.isdigit()]
    assert near_duplicate_groups([keys[i] for i in originals], [phashes[i] for i in originals],
                                 [dhashes[i] for i in originals]) == []  # fmt: skip


def test_groups_follow_the_keys_order_and_identical_hashes_share_a_bucket():
    a, b = "0" * 16, "f" * 16
    near = "0" * 15 + "7"  # 3 bits from a
    groups = near_duplicate_groups(["x", "y", "z", "w"], [b, a, near, a], [a, a, a, a])
    assert groups == [["y", "z", "w"]]
    assert near_duplicate_groups([], [], []) == []
    with pytest.raises(ValueError):
        near_duplicate_groups(["x"], [a], [])


def test_groups_are_stars_a_chain_does_not_join_its_ends_and_the_dhash_check_splits_chance_matches():
    a, one, two = "0" * 16, "0" * 15 + "1", "0" * 15 + "3"
    assert near_duplicate_groups(["a", "b", "c"], [a, one, two], [a, a, a]) == [["a", "b", "c"]]
    assert near_duplicate_groups(["a", "b"], [a, one], [a, "f" * 16]) == []  # phash alike, dhash not
    # b is 8 bits from a and from c, a and c are 16 apart: b joins a's group, c stays alone
    b, c = "0" * 14 + "ff", "0" * 12 + "ffff"
    assert hash_distance(a, b) == hash_distance(b, c) == 8 and hash_distance(a, c) == 16
    assert near_duplicate_groups(["a", "b", "c"], [a, b, c], [a, a, a]) == [["a", "b"]]


def test_hash_matches_must_also_look_alike_pixel_by_pixel():
    """Identical hashes, different pictures: only the pair whose thumbnails correlate joins."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    copy = np.clip(base.astype(int) + rng.integers(-3, 4, (32, 32)), 0, 255).astype(np.uint8)  # a re-encode's noise
    other = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    strangers = [rng.integers(0, 256, (32, 32)).astype(np.uint8) for _ in range(20)]
    thumbs = np.stack([base, copy, other, *strangers])
    keys = [str(i) for i in range(len(thumbs))]
    same = ["0" * 16] * len(keys)
    assert near_duplicate_groups(keys, same, same) == [keys]  # the hashes alone group everything
    assert near_duplicate_groups(keys, same, same, thumbnails=thumbs) == [["0", "1"]]
    with pytest.raises(ValueError):
        near_duplicate_groups(keys, same, same, thumbnails=thumbs[:2])


def test_the_pixel_limit_follows_the_set_within_its_bounds():
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (50, 32, 32)).astype(np.uint8)  # unrelated images: every pair far apart
    assert pixel_limit(noise) == pytest.approx(PIXEL_CEILING)
    ramp = np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1))
    alike = np.stack([np.clip(ramp.astype(int) + rng.integers(-2, 3, (32, 32)), 0, 255) for _ in range(50)])
    assert pixel_limit(alike.astype(np.uint8)) == pytest.approx(PIXEL_FLOOR)  # images of one kind: the limit tightens
    middle = pixel_limit(np.stack([*alike[:25], *noise[:25]]).astype(np.uint8))
    assert PIXEL_FLOOR - 1e-6 <= middle <= PIXEL_CEILING + 1e-6
    assert thumbnail(np.zeros((3, 64, 64), dtype=np.uint8)).shape == (32, 32)


def test_grouping_is_vectorised_enough_for_forty_thousand_images():
    rng = np.random.default_rng(0)
    n = 20_000  # half the curator's 40,000: the comparisons grow with n², the test stays short
    phashes = [f"{x:016x}" for x in rng.integers(0, 2**63, n, dtype=np.uint64)]
    dhashes = [f"{x:016x}" for x in rng.integers(0, 2**63, n, dtype=np.uint64)]
    phashes[-1], dhashes[-1] = phashes[0], dhashes[0]  # one planted pair at the far ends
    groups = near_duplicate_groups([str(i) for i in range(n)], phashes, dhashes)  # the speed: docs/curation.md
    assert ["0", str(n - 1)] in groups


def test_inventory_reports_unreadable_files_with_reasons_and_groups_the_planted_near_duplicates(tmp_path):
    inv = inventory(open_source(str(curation_folder(tmp_path / "planted"))), workers=2)
    reasons = {s.ref.sample_id: s.reason for s in inv.unreadable}
    assert set(reasons) == set(UNREADABLE)
    assert all(UNREADABLE[key] in reasons[key] for key in UNREADABLE)
    assert all(s.phash is None for s in inv.unreadable)
    assert inv.duplicates == [sorted([*EXACT, *EXACT.values()])]
    assert sorted(inv.near_duplicates) == sorted([[original, copy] for copy, original in NEAR.items()])


def test_images_under_the_minimum_side_are_not_compared():
    """scikit-learn's 8 × 8 digits: by their hashes more than two thirds fall into near-duplicate groups."""
    inv = inventory(open_source("digits"), workers=2)
    assert len(inv.samples) == 1797 and all(s.readable for s in inv.samples)
    assert all(s.phash is None for s in inv.samples)
    assert inv.near_duplicates == []
