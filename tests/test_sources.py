"""Sources: what each kind lists (ids, labels, splits, order), what it reads, and how it fails.

Also the inventory of a source (hashes, header sizes, readability, duplicates, counts).
"""

from __future__ import annotations

import csv
import io
import stat
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.archives import ExpansionLimits, expansion_problem
from engine.data import DataError
from engine.images import UnreadableImage
from engine.inventory import inventory
from engine.sources import open_source
from tests.imagefiles import shared


def png(value: int = 0, size=(12, 8), mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, value).save(buffer, "PNG")
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_with_label_folders(tmp_path):
    write(tmp_path / "b" / "2.JPG", png(3))  # extension case does not matter (bytes are PNG; decode decides)
    write(tmp_path / "a" / "1.png", png(1))
    write(tmp_path / "a" / "deep" / "3.tiff", png(2))
    write(tmp_path / "a" / "notes.txt", b"not listed")
    write(tmp_path / "a" / ".hidden.png", png())
    write(tmp_path / ".cache" / "x.png", png())
    write(tmp_path / "b" / "broken.png", b"listed anyway; skipped at decode")
    source = open_source(str(tmp_path))
    assert (source.kind, source.location) == ("folder", str(tmp_path))
    assert (source.label_origin, source.split_origin) == ("folder names", "none")
    refs = source.refs()
    assert [(r.sample_id, r.label, r.split) for r in refs] == [
        ("a/1.png", "a", None),
        ("a/deep/3.tiff", "a", None),
        ("b/2.JPG", "b", None),
        ("b/broken.png", "b", None),
    ]
    assert refs[0].location == str(tmp_path / "a" / "1.png")
    assert source.read_bytes(refs[0]) == png(1)
    assert source.read(refs[2]).size == (12, 8)
    with pytest.raises(UnreadableImage, match="^not an image"):
        source.read(refs[3])


def test_flat_folder_has_no_labels(tmp_path):
    for name in ("b.png", "a.bmp", "c.webp"):
        write(tmp_path / name, png())
    source = open_source(str(tmp_path))
    assert [(r.sample_id, r.label, r.split) for r in source.refs()] == [
        ("a.bmp", None, None),
        ("b.png", None, None),
        ("c.webp", None, None),
    ]
    assert source.label_origin == "none"


def test_split_folders_give_splits_and_labels(tmp_path):
    write(tmp_path / "train" / "good" / "1.png", png())
    write(tmp_path / "train" / "good" / "2.png", png())
    write(tmp_path / "Test" / "bad" / "3.png", png())
    write(tmp_path / "val" / "4.png", png())  # directly in a split folder: no label
    source = open_source(str(tmp_path))
    assert [(r.sample_id, r.label, r.split) for r in source.refs()] == [
        ("Test/bad/3.png", "bad", "Test"),
        ("train/good/1.png", "good", "train"),
        ("train/good/2.png", "good", "train"),
        ("val/4.png", None, "val"),
    ]
    assert source.split_origin == "top-level folder names"


def test_folder_whose_top_names_are_not_all_splits_is_a_label_layout(tmp_path):
    write(tmp_path / "train" / "1.png", png())
    write(tmp_path / "other" / "2.png", png())
    refs = open_source(str(tmp_path)).refs()
    assert [(r.label, r.split) for r in refs] == [("other", None), ("train", None)]


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_zip_lists_members_without_extracting_and_rejects_unsafe_names(tmp_path):
    archive = make_zip(
        tmp_path / "set.zip",
        {
            "train/cat/0.png": png(10),
            "train/dog/1.png": png(20),
            "test/cat/2.png": png(30),
            "test/cat/readme.md": b"ignored",
            "__MACOSX/test/cat/._2.png": b"resource fork",
            "../evil.png": png(),
            "/abs/evil.png": png(),
        },
    )
    source = open_source(str(archive))
    assert (source.kind, source.split_origin) == ("zip", "top-level folder names")
    refs = source.refs()
    assert [(r.sample_id, r.label, r.split) for r in refs] == [
        ("test/cat/2.png", "cat", "test"),
        ("train/cat/0.png", "cat", "train"),
        ("train/dog/1.png", "dog", "train"),
    ]
    assert refs[0].location == f"{archive}:test/cat/2.png"
    assert source.read_bytes(refs[1]) == png(10)
    assert np.asarray(source.read(refs[2]).convert("L"))[0, 0] == 20
    assert sorted(s.reason for s in source.rejected) == [
        "zip member with a '..' path: '../evil.png'",
        "zip member with an absolute path: '/abs/evil.png'",
    ]
    assert list(tmp_path.iterdir()) == [archive]  # nothing extracted


def test_zip_symlink_member_is_rejected_not_read(tmp_path):
    archive = make_zip(tmp_path / "set.zip", {"a/0.png": png(), "a/1.png": png(5)})
    with zipfile.ZipFile(archive, "a") as handle:
        link = zipfile.ZipInfo("a/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16  # how zip -y stores a symbolic link
        handle.writestr(link, "/etc/passwd")
    source = open_source(str(archive))
    assert [r.sample_id for r in source.refs()] == ["a/0.png", "a/1.png"]
    assert [s.reason for s in source.rejected] == ["zip member with a symbolic link: 'a/link.png'"]


def bomb_zip(path: Path, member_bytes: int, name: str = "0/big.png") -> Path:
    """One deflated member of zeros: a few kB on disk, `member_bytes` when read."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(name, "w", force_zip64=True) as member:
            chunk = b"\0" * (1 << 24)
            for start in range(0, member_bytes, len(chunk)):
                member.write(chunk[: member_bytes - start])
    return path


def test_zip_bomb_is_refused_from_its_directory_before_any_member_is_read(tmp_path):
    archive = bomb_zip(tmp_path / "bomb.zip", 64 << 20)  # 64 MB of zeros in about 64 kB: ratio ~1000
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(DataError, match=r"^refused .*bomb.zip: the zip expands to 64.0 MB from .* a ratio over"):
        open_source(str(archive))


def test_expansion_limits_count_size_ratio_and_total(tmp_path):
    infos = []
    for name, size, packed in [("a.png", 10, 10), ("b.png", 10, 10)]:
        info = zipfile.ZipInfo(name)
        info.file_size, info.compress_size = size, packed
        infos.append(info)
    assert expansion_problem(infos) is None
    assert "members, more than the 1 allowed" in expansion_problem(infos, ExpansionLimits(max_members=1))
    assert "in one member ('a.png')" in expansion_problem(infos, ExpansionLimits(max_member_bytes=9))
    assert "more than the 19 B allowed" in expansion_problem(infos, ExpansionLimits(max_total_bytes=19))
    # a ratio is judged only above ratio_from_bytes: small members may compress any amount
    infos[0].compress_size = 1
    assert expansion_problem(infos, ExpansionLimits(max_ratio=5)) is None
    assert "a ratio over the 5:1" in expansion_problem(infos, ExpansionLimits(max_ratio=5, ratio_from_bytes=5))


def test_npz_is_a_zip_and_passes_the_same_expansion_limits(tmp_path):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, train_images=np.zeros((1024, 256, 256), np.uint8))  # 64 MB compressing ~1000:1
    with pytest.raises(DataError, match=r"^refused .*bomb.npz: the zip expands to 64.0 MB"):
        open_source(str(path))


def test_inventory_of_an_npz_decodes_each_array_so_nan_images_are_unreadable(tmp_path):
    path = tmp_path / "nan.npz"
    images = np.zeros((3, 8, 8), np.float32)
    images[1] = np.nan
    np.savez(path, train_images=images)
    report = inventory(open_source(str(path)))
    assert [(s.ref.sample_id, s.reason) for s in report.unreadable] == [
        ("train/1", "no pixel values: every value is NaN or infinite")
    ]


def test_npz_images_that_are_not_numbers_are_a_data_error(tmp_path):
    path = tmp_path / "words.npz"
    np.savez(path, train_images=np.array([[["a", "b"]]]))
    with pytest.raises(DataError, match=r"train_images must hold numbers, got <U1 values"):
        open_source(str(path))


def test_folder_symlink_to_a_file_outside_is_listed_but_never_read(tmp_path):
    outside = write(tmp_path / "elsewhere" / "secret.png", png(200))
    root = tmp_path / "set"
    write(root / "a" / "0.png", png(1))
    write(root / "a" / "1.png", png(2))
    (root / "a" / "leak.png").symlink_to(outside)
    (root / "a" / "inside.png").symlink_to(root / "a" / "0.png")  # a link within the folder is an ordinary file
    (root / "loop.png").symlink_to(root / "loop.png")
    (root / "b").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # a linked folder is not listed
    source = open_source(str(root))
    refs = {r.sample_id: r for r in source.refs()}
    assert sorted(refs) == ["a/0.png", "a/1.png", "a/inside.png", "a/leak.png", "loop.png"]
    assert source.read_bytes(refs["a/inside.png"]) == png(1)
    with pytest.raises(UnreadableImage, match="^symbolic link to outside the dataset folder"):
        source.read_bytes(refs["a/leak.png"])
    with pytest.raises(UnreadableImage, match="^cannot read file: .*loop.png: Too many levels of symbolic links"):
        source.read_bytes(refs["loop.png"])
    report = inventory(source)
    assert {s.ref.sample_id for s in report.unreadable} == {"a/leak.png", "loop.png"}


def test_zip_of_a_wrapping_folder_is_looked_through(tmp_path):
    archive = make_zip(tmp_path / "br.zip", {"br35h/no/1.jpg": png(), "br35h/yes/2.jpg": png()})
    refs = open_source(str(archive)).refs()
    assert [(r.sample_id, r.label) for r in refs] == [("no/1.jpg", "no"), ("yes/2.jpg", "yes")]
    assert refs[0].location == f"{archive}:br35h/no/1.jpg"


def test_csv_manifest_resolves_relative_paths_and_keeps_missing_files(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    write(folder / "img" / "a.png", png(5))
    write(tmp_path / "elsewhere.png", png(6))
    with (folder / "list.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Path", "label", "split"])
        writer.writerow(["img/a.png", "0", "train"])
        writer.writerow([str(tmp_path / "elsewhere.png"), "1", "test"])
        writer.writerow(["img/missing.png", "1", ""])
    monkeypatch.chdir(tmp_path)  # relative paths follow the CSV, not the working directory
    source = open_source(str(folder / "list.csv"))
    assert source.kind == "csv"
    assert (source.label_origin, source.split_origin) == ("CSV column 'label'", "CSV column 'split'")
    refs = {r.sample_id: r for r in source.refs()}
    assert [(r.label, r.split) for r in refs.values()] == [("1", "test"), ("0", "train"), ("1", None)]
    assert source.read_bytes(refs["img/a.png"]) == png(5)
    assert source.read_bytes(refs[str(tmp_path / "elsewhere.png")]) == png(6)
    with pytest.raises(UnreadableImage) as caught:
        source.read_bytes(refs["img/missing.png"])
    assert caught.value.reason == f"file not found: {folder / 'img' / 'missing.png'}"


def test_csv_without_path_column_is_a_data_error(tmp_path):
    manifest = write(tmp_path / "m.csv", b"file,label\na.png,0\n")
    with pytest.raises(DataError, match="has no 'path' column"):
        open_source(str(manifest))


def test_csv_listing_a_file_twice_is_a_data_error(tmp_path):
    manifest = write(tmp_path / "m.csv", b"path,split\na.png,train\na.png,test\n")
    with pytest.raises(DataError, match=r"lists 'a.png' twice \(rows 2 and 3\)"):
        open_source(str(manifest))


@pytest.mark.parametrize("label_shape", ["flat", "column"])
def test_npz_labels_flat_or_column_become_strings(tmp_path, label_shape):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 255, (5, 6, 7), np.uint8)
    test = rng.integers(0, 255, (3, 6, 7, 3), np.uint8)
    labels = {"train_labels": np.array([0, 1, 1, 0, 2], np.uint8), "test_labels": np.array([1, 0, 1], np.uint8)}
    if label_shape == "column":
        labels = {k: v[:, None] for k, v in labels.items()}
    np.savez(tmp_path / "set.npz", train_images=train, test_images=test, **labels)
    source = open_source(str(tmp_path / "set.npz"))
    assert (source.kind, source.label_origin) == ("npz", "npz *_labels arrays")
    refs = source.refs()
    assert [r.sample_id for r in refs] == [f"train/{i}" for i in range(5)] + [f"test/{i}" for i in range(3)]
    assert [r.label for r in refs] == ["0", "1", "1", "0", "2", "1", "0", "1"]
    assert refs[6].location == f"{tmp_path / 'set.npz'}:test[1]"
    assert source.read_bytes(refs[0]) is None
    assert np.array_equal(source.read(refs[3]), train[3])
    assert np.array_equal(source.read(refs[7]), test[2])


def test_npz_without_image_arrays_is_a_data_error(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"no train_images, val_images or test_images array \(keys: images\)"):
        open_source(str(tmp_path / "x.npz"))


def test_digits_has_a_fixed_seeded_split_and_scaled_pixels():
    source = open_source("digits")
    refs = source.refs()
    assert len(refs) == 1797 and refs[5].sample_id == "digits/5"
    assert sorted({r.label for r in refs}) == [str(d) for d in range(10)]
    assert Counter(r.split for r in refs) == {"train": 1258, "test": 539}  # round(0.7 · 1797) = 1258
    order = np.random.default_rng(0).permutation(1797)
    assert {r.split for r in refs if int(r.sample_id.split("/")[1]) in set(order[:1258].tolist())} == {"train"}
    assert refs == open_source("digits").refs()
    image = source.read(refs[0])
    assert image.dtype == np.uint8 and image.shape == (8, 8)
    assert image[0].tolist() == [0, 0, 80, 207, 143, 16, 0, 0]  # sklearn's row 0..16: [0, 0, 5, 13, 9, 1, 0, 0]
    assert max(int(source.read(r).max()) for r in refs) == 255


def test_open_source_errors_are_one_clear_line(tmp_path):
    with pytest.raises(DataError, match=r"^no such file or folder: .*nope$"):
        open_source(str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"unsupported source .*notes.txt: expected an image folder, a \.zip"):
        open_source(str(write(tmp_path / "notes.txt", b"x")))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    write(tmp_path / "empty" / "sub" / "readme.txt", b"no images here")
    with pytest.raises(DataError, match="^no images in"):
        open_source(str(tmp_path / "empty"))


def test_inventory_reports_sizes_readability_duplicates_and_counts(tmp_path):
    write(tmp_path / "train" / "ok" / "a.png", png(1, size=(40, 30), mode="RGB"))
    write(tmp_path / "train" / "ok" / "b.png", png(1, size=(40, 30), mode="RGB"))  # same bytes as a.png
    write(tmp_path / "train" / "bad" / "c.png", png(2)[:-30])
    write(tmp_path / "test" / "ok" / "d.png", b"")
    progress = []
    report = inventory(open_source(str(tmp_path)), on_progress=lambda done, total: progress.append((done, total)))
    info = {s.ref.sample_id: s for s in report.samples}
    assert (info["train/ok/a.png"].width, info["train/ok/a.png"].height, info["train/ok/a.png"].mode) == (40, 30, "RGB")
    assert info["train/ok/a.png"].readable and info["train/ok/a.png"].sha256 == info["train/ok/b.png"].sha256
    assert (info["train/bad/c.png"].readable, info["train/bad/c.png"].reason) == (False, "truncated image data")
    assert info["train/bad/c.png"].width == 12  # the header still tells the size
    assert (info["test/ok/d.png"].reason, info["test/ok/d.png"].num_bytes) == ("empty file (0 bytes)", 0)
    assert report.duplicates == [["train/ok/a.png", "train/ok/b.png"]]
    assert report.by_label == {"bad": 1, "ok": 3}
    assert report.by_split == {"test": 1, "train": 3}
    assert report.by_split_label[("train", "ok")] == 2
    assert progress[-1] == (4, 4)


def test_breastmnist_counts_by_split_and_label():
    source = open_source(str(shared("breastmnist.npz")))
    counts = Counter((r.split, r.label) for r in source.refs())
    assert counts == {
        ("train", "1"): 399,
        ("train", "0"): 147,
        ("val", "1"): 57,
        ("val", "0"): 21,
        ("test", "1"): 114,
        ("test", "0"): 42,
    }
    assert source.read(source.refs()[0]).shape == (28, 28)


def test_pneumoniamnist_column_labels_are_flattened():
    counts = Counter((r.split, r.label) for r in open_source(str(shared("pneumoniamnist.npz"))).refs())
    assert counts[("train", "0")] == 1214 and counts[("train", "1")] == 3494
    assert counts[("test", "0")] == 234 and counts[("test", "1")] == 390


def test_br35h_folder_and_its_one_duplicate():
    source = open_source(str(shared("br35h")))
    assert Counter(r.label for r in source.refs()) == {"no": 1500, "yes": 701}
    report = inventory(source)
    assert len(report.duplicates) == 1 and all(i.startswith("no/") for i in report.duplicates[0])
    assert all(s.readable for s in report.samples)


def test_cifar10_zip_has_splits_and_classes():
    source = open_source(str(shared("cifar10/cifar10_jpg_q75.zip")))
    counts = Counter((r.split, r.label) for r in source.refs())
    assert len(counts) == 20 and counts[("train", "cat")] == 5000 and counts[("test", "cat")] == 1000
    first = source.refs()[0]
    assert first.sample_id == "test/airplane/0000.jpg" and source.read(first).size == (32, 32)
