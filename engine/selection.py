"""Which samples train and which are scored, from the refs' labels and splits and a `DataConfig`.

With splits (the paper's protocol): train on the normal images of `train_split`, score `score_split`.
Without splits: a seeded holdout of the normal images is scored together with every non-normal image,
or, with no holdout, every image is scored (and may also have trained).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.config import DataConfig
from engine.data import DataError, SampleRef


@dataclass(frozen=True)
class Selection:
    """Indices into the source's refs, ascending: the images that train and the images that are scored."""

    train: list[int]
    score: list[int]


def select(refs: Sequence[SampleRef], config: DataConfig) -> Selection:
    """Split `refs` into training and scored indices by the rules of `config` (see the module docstring).

    Raises `DataError` (one line) for an absent normal label or split, or an empty selection.
    """
    if not refs:
        raise DataError("the source lists no images")
    normal = config.normal_label
    labels = {r.label for r in refs if r.label is not None}
    if normal is not None and normal not in labels:
        raise DataError(f"no images labelled {normal!r}; labels present: {_names(labels)}")
    is_normal = [normal is None or r.label == normal for r in refs]
    splits = {r.split for r in refs if r.split is not None}
    if splits:
        for name in (config.train_split, config.score_split):
            if name is not None and name not in splits:
                raise DataError(f"no split {name!r}; splits present: {_names(splits)}")
        train = [i for i, r in enumerate(refs) if is_normal[i] and config.train_split in (None, r.split)]
        score = [i for i, r in enumerate(refs) if config.score_split in (None, r.split)]
        where = f" in split {config.train_split!r}" if config.train_split is not None else ""
    elif normal is not None and config.holdout_fraction > 0:
        normals = [i for i in range(len(refs)) if is_normal[i]]
        order = np.random.default_rng(config.seed).permutation(len(normals))
        held = {normals[j] for j in order[: round(config.holdout_fraction * len(normals))]}
        train = [i for i in normals if i not in held]
        score = [i for i in range(len(refs)) if i in held or not is_normal[i]]
        where = f" after holding out {len(held)} of {len(normals)} for scoring"
    else:
        train = [i for i in range(len(refs)) if is_normal[i]]
        score = list(range(len(refs)))
        where = ""
    if not train:
        what = f"labelled {normal!r}" if normal is not None else "at all"
        raise DataError(f"no training images: none {what}{where}")
    if not score:  # only reachable by a holdout that rounds to 0 on a set with no anomalies
        held_out = f"holdout_fraction {config.holdout_fraction} of {len(train)} normal images rounds to 0"
        raise DataError(f"no images to score: every image is normal and {held_out}; raise holdout_fraction")
    return Selection(train, score)


def _names(values: set[str]) -> str:
    """Names for an error line, numbers in numeric order ("2, 10" rather than "10, 2")."""
    if not values:
        return "none"
    return ", ".join(sorted(values, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v)))
