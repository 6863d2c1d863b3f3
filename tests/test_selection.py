"""Selection: which refs train and which are scored, with and without splits, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import DataConfig
from engine.data import DataError, SampleRef
from engine.selection import select


def refs_of(*rows: tuple[str | None, str | None]) -> list[SampleRef]:
    """One ref per (label, split)."""
    return [SampleRef(f"s{i}", f"loc{i}", label, split) for i, (label, split) in enumerate(rows)]


SPLIT_REFS = refs_of(("0", "train"), ("1", "train"), ("0", "train"), ("0", "test"), ("1", "test"), ("0", "val"))


def config(**fields) -> DataConfig:
    return DataConfig(**{"normal_label": "0", "train_split": "train", "score_split": "test", **fields})


def test_with_splits_train_on_normals_of_the_train_split_and_score_the_test_split():
    selection = select(SPLIT_REFS, config())
    assert selection.train == [0, 2]
    assert selection.score == [3, 4]


def test_empty_split_or_label_means_every_one():
    assert select(SPLIT_REFS, config(train_split=None)).train == [0, 2, 3, 5]
    assert select(SPLIT_REFS, config(normal_label=None)).train == [0, 1, 2]
    assert select(SPLIT_REFS, config(score_split=None)).score == [0, 1, 2, 3, 4, 5]
    assert select(SPLIT_REFS, config(score_split="val")).score == [5]


def test_without_splits_a_seeded_holdout_of_normals_is_scored_with_every_anomaly():
    refs = refs_of(*[("good", None)] * 10, *[("bad", None)] * 4)
    selection = select(refs, config(normal_label="good", holdout_fraction=0.3, seed=0))
    # The documented rule: the first round(0.3 · 10) = 3 of a permutation seeded with `seed` are held out.
    held = sorted(np.random.default_rng(0).permutation(10)[:3].tolist())
    assert selection.score == held + [10, 11, 12, 13]
    assert selection.train == [i for i in range(10) if i not in held]
    assert select(refs, config(normal_label="good", holdout_fraction=0.3, seed=0)) == selection
    other = select(refs, config(normal_label="good", holdout_fraction=0.3, seed=1))
    assert other.train != selection.train and len(other.train) == 7


def test_without_splits_and_no_holdout_every_image_is_scored():
    refs = refs_of(("good", None), ("bad", None), ("good", None))
    selection = select(refs, config(normal_label="good", holdout_fraction=0.0))
    assert (selection.train, selection.score) == ([0, 2], [0, 1, 2])
    unlabelled = refs_of((None, None), (None, None))
    selection = select(unlabelled, config(normal_label=None, holdout_fraction=0.5))  # no label: no holdout
    assert (selection.train, selection.score) == ([0, 1], [0, 1])


def test_split_settings_are_ignored_when_the_source_has_no_splits():
    refs = refs_of(("0", None), ("1", None))
    selection = select(refs, config(train_split="train", score_split="test", holdout_fraction=0.0))
    assert (selection.train, selection.score) == ([0], [0, 1])


def test_absent_label_or_split_is_named_with_what_is_present():
    refs = refs_of(("2", "train"), ("10", "val"), ("1", "train"))
    with pytest.raises(DataError, match=r"^no images labelled '7'; labels present: 1, 2, 10$"):
        select(refs, config(normal_label="7"))
    with pytest.raises(DataError, match=r"^no split 'test'; splits present: train, val$"):
        select(refs, config(normal_label="1"))
    with pytest.raises(DataError, match=r"^no images labelled '0'; labels present: none$"):
        select(refs_of((None, None)), config())


def test_empty_train_selection_says_why():
    with pytest.raises(DataError, match=r"^no training images: none labelled '1' in split 'train'$"):
        select(refs_of(("0", "train"), ("1", "test")), config(normal_label="1"))
    with pytest.raises(DataError, match=r"^no training images: none labelled 'a' after holding out 1 of 1"):
        select(refs_of(("a", None), ("b", None)), config(normal_label="a", holdout_fraction=0.9))


def test_empty_score_selection_says_why():
    with pytest.raises(DataError, match=r"^no images to score: every image is normal"):
        select(refs_of(("a", None), ("a", None), ("a", None)), config(normal_label="a", holdout_fraction=0.1))


def test_no_refs_is_a_data_error():
    with pytest.raises(DataError, match="lists no images"):
        select([], config())
