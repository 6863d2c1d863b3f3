"""Loading: decode in parallel and in order, skip bad files with their reasons, split train and score."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import DataConfig
from engine.data import DataError
from engine.loading import load_data, load_images
from engine.sources import open_source
from tests.imagefiles import messy_folder, save, shared


def test_bad_files_are_skipped_with_their_reasons_and_the_rest_loaded_in_order(tmp_path):
    source = open_source(str(messy_folder(tmp_path)))
    progress = []
    images, skipped = load_images(
        source, source.refs(), image_size=8, workers=3, on_progress=lambda done, total: progress.append((done, total))
    )
    assert images.ids == ["good/colour.jpg", "good/grey.png", "good/palette.gif", "good/sixteen.tif"]
    assert {s.ref.sample_id: s.reason for s in skipped} == {
        "bad/empty.png": "empty file (0 bytes)",
        "bad/huge.png": "image too large: 20000×20000 = 400 Mpx > limit 100 Mpx",
        "bad/text.png": "not an image: cannot identify image file",
        "bad/truncated.jpg": "truncated image data",
    }
    assert images.pixels.dtype == torch.uint8 and images.pixels.shape == (4, 3, 8, 8)  # one colour image: C = 3
    colour, grey, palette, sixteen = images.pixels[:, :, 4, 4].tolist()
    assert abs(colour[0] - 250) <= 3 and colour[1] <= 12
    assert grey == [50, 50, 50] and palette == [0, 0, 0] and sixteen == [255, 255, 255]  # greys replicated
    assert progress[-1] == (8, 8) and [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_all_grey_images_load_as_one_channel_and_workers_do_not_change_the_result(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(12):
        save(tmp_path / f"{i:02}.png", Image.fromarray(rng.integers(0, 255, (20 + i, 30), np.uint8)))
    source = open_source(str(tmp_path))
    one, _ = load_images(source, source.refs(), image_size=16, workers=1)
    many, _ = load_images(source, source.refs(), image_size=16, workers=4)
    assert one.pixels.shape == (12, 1, 16, 16)
    assert torch.equal(one.pixels, many.pixels) and one.ids == many.ids


def test_load_data_holdout_splits_a_labelled_folder(tmp_path):
    for i in range(10):
        save(tmp_path / "normal" / f"{i}.png", Image.new("L", (10, 10), i))
    for i in range(3):
        save(tmp_path / "odd" / f"{i}.png", Image.new("L", (10, 10), 200 + i))
    (tmp_path / "odd" / "3.png").write_bytes(b"")
    config = DataConfig(source=str(tmp_path), normal_label="normal", holdout_fraction=0.3, image_size=8)
    data = load_data(config)
    assert len(data.train) == 7 and all(label == "normal" for label in data.train.labels)
    assert Counter(data.score.labels) == {"normal": 3, "odd": 3}
    assert set(data.train.ids).isdisjoint(data.score.ids)
    assert data.score_in_train.tolist() == [-1] * 6
    assert [(s.ref.sample_id, s.reason) for s in data.skipped] == [("odd/3.png", "empty file (0 bytes)")]
    assert data.train.pixels.shape == (7, 1, 8, 8)
    # Pixels follow their refs: image i.png is the constant i.
    assert [int(p[0, 0, 0]) for p in data.train.pixels] == [int(i.split("/")[1][0]) for i in data.train.ids]


def test_load_data_without_holdout_maps_scored_images_to_their_training_rows(tmp_path):
    for name, value in [("a", 10), ("b", 20), ("c", 30)]:
        save(tmp_path / "ok" / f"{name}.png", Image.new("L", (10, 10), value))
    save(tmp_path / "ko" / "d.png", Image.new("L", (10, 10), 40))
    data = load_data(DataConfig(source=str(tmp_path), normal_label="ok", holdout_fraction=0.0, image_size=8))
    assert data.train.ids == ["ok/a.png", "ok/b.png", "ok/c.png"]
    assert data.score.ids == ["ko/d.png", "ok/a.png", "ok/b.png", "ok/c.png"]
    assert data.score_in_train.tolist() == [-1, 0, 1, 2]
    assert data.score_in_train.dtype == np.int64


def test_load_data_reports_missing_csv_files(tmp_path):
    save(tmp_path / "a.png", Image.new("L", (10, 10), 1))
    save(tmp_path / "b.png", Image.new("L", (10, 10), 2))
    save(tmp_path / "c.png", Image.new("L", (10, 10), 3))  # a second normal image: training needs two
    (tmp_path / "list.csv").write_text("path,label\na.png,n\nb.png,x\nc.png,n\ngone.png,n\n")
    data = load_data(DataConfig(source=str(tmp_path / "list.csv"), normal_label="n", holdout_fraction=0.0))
    assert data.train.ids == ["a.png", "c.png"]
    assert [(s.ref.sample_id, s.reason) for s in data.skipped] == [
        ("gone.png", f"file not found: {tmp_path / 'gone.png'}")
    ]


def test_no_trainable_images_after_skipping_is_a_data_error(tmp_path):
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "a.png").write_bytes(b"")
    (tmp_path / "n" / "b.png").write_text("text")
    save(tmp_path / "x" / "c.png", Image.new("L", (10, 10)))
    config = DataConfig(source=str(tmp_path), normal_label="n", holdout_fraction=0.0)
    with pytest.raises(
        DataError, match=r"^no trainable images: all 2 training images were skipped \(first: n/a.png: empty"
    ):
        load_data(config)


def test_load_data_on_digits_follows_the_paper_protocol():
    data = load_data(DataConfig(source="digits", normal_label="3", image_size=8))
    refs = data.source.refs()
    assert len(data.train) == sum(r.split == "train" and r.label == "3" for r in refs)
    assert len(data.score) == sum(r.split == "test" for r in refs) == 539
    assert data.train.pixels.shape[1:] == (1, 8, 8) and int(data.train.pixels.max()) == 255
    assert (data.score_in_train == -1).all() and data.skipped == []


def test_breastmnist_loads_the_normal_train_images_and_the_whole_test_split():
    data = load_data(DataConfig(source=str(shared("breastmnist.npz")), normal_label="1", image_size=28))
    assert data.train.pixels.shape == (399, 1, 28, 28)
    assert data.score.pixels.shape == (156, 1, 28, 28)
    assert Counter(data.score.labels) == {"1": 114, "0": 42} and data.skipped == []
    raw = np.load(shared("breastmnist.npz"))["train_images"]
    first_normal = int(data.train.ids[0].split("/")[1])
    assert torch.equal(data.train.pixels[0, 0], torch.from_numpy(raw[first_normal]))  # 28 px: untouched
