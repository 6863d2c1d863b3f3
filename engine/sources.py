"""Data sources behind one small interface: list `SampleRef`s cheaply, read one image on demand.

`open_source(spec)` picks the kind from the spec: an image folder, a .zip of one, a CSV manifest, a
MedMNIST-style .npz, or "digits" (scikit-learn's bundled 8×8 digits, an offline demo). Every kind
lists its refs once, sorted and deterministic, and says in words where labels and splits came from.
Sources never decode: `read` returns the raw image (a lazily opened PIL image or an array) and
`images.decode` normalises it.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from engine.archives import (
    DEFAULT_LIMITS,
    IMAGE_EXTENSIONS,
    SPLIT_NAMES,
    ExpansionLimits,
    expansion_problem,
    is_image_name,
    zip_images,
)
from engine.data import DataError, SampleRef, Skipped
from engine.images import UnreadableImage, open_image

NPZ_SPLITS = ("train", "val", "test")
DIGITS_TRAIN_FRACTION = 0.7  # digits has no official split: a seeded permutation, first 70 % train
DIGITS_SPLIT_SEED = 0
SUPPORTED = "an image folder, a .zip of one, a .csv manifest (path[,label][,split]), a MedMNIST-style .npz or 'digits'"


class Source:
    """A dataset the engine can list and read; subclasses fill in the listing and the reading.

    `rejected` holds entries found while listing that are never offered as refs (an unsafe member name
    in a zip); they are reported with the skipped images.
    """

    kind: str = ""

    def __init__(self, location: str, refs: list[SampleRef], label_origin: str, split_origin: str) -> None:
        self.location = location
        self.label_origin = label_origin
        self.split_origin = split_origin
        self.rejected: list[Skipped] = []
        self._refs = refs

    def refs(self) -> list[SampleRef]:
        """Every sample of the source, in a fixed order (sorted by path, or by split then index)."""
        return list(self._refs)

    def read_bytes(self, ref: SampleRef) -> bytes | None:
        """The encoded file of one sample, or None for array sources; raises `UnreadableImage` if absent."""
        raise NotImplementedError

    def read(self, ref: SampleRef) -> Image.Image | np.ndarray:
        """The raw image before normalisation: a lazily opened PIL image (header parsed, pixels not yet).

        Raises `UnreadableImage` when the file is missing or is not an image.
        """
        data = self.read_bytes(ref)
        assert data is not None, "array sources override read()"
        return open_image(data)

    def close(self) -> None:
        """Release open files (the zip handle); listing and reading afterwards is undefined."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location!r}: {len(self._refs)} images>"


def open_source(spec: str) -> Source:
    """Open the source a user named: 'digits', or a path to a folder, .zip, .csv or .npz.

    Raises `DataError` for a missing path, an unsupported file type or a source holding no images.
    """
    if spec.strip() == "digits":  # a folder called digits is still reachable as ./digits
        return DigitsSource()
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"no such file or folder: {spec}")
    if path.is_dir():
        return FolderSource(path)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return ZipSource(path)
    if suffix == ".csv":
        return CsvSource(path)
    if suffix == ".npz":
        return NpzSource(path)
    raise DataError(f"unsupported source {spec}: expected {SUPPORTED}")


class FolderSource(Source):
    """root/<label>/*, flat root/*, or root/<split>/<label>/* when top-level folders are split names.

    Symbolic links are followed only to files inside the folder: a link leading elsewhere on the machine
    is listed but unreadable ("symbolic link to outside ..."), so no file outside the registered folder
    is ever read, thumbnailed or trained on. Linked folders are not descended (os.walk's default), so a
    link loop cannot make the listing go round.
    """

    kind = "folder"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real_root = Path(os.path.realpath(root))
        relative = []
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = [d for d in subfolders if not d.startswith(".")]  # prune hidden folders in place
            base = Path(folder).relative_to(root)
            relative += [(base / name).as_posix() for name in files if is_image_name(name)]
        if not relative:
            raise DataError(f"no images in {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))} files)")
        layout = Layout(relative)
        super().__init__(
            str(root),
            [SampleRef(p, str(root / p), label, split) for p, label, split in layout.items],
            layout.label_origin,
            layout.split_origin,
        )

    def read_bytes(self, ref: SampleRef) -> bytes:
        path = self.root / ref.sample_id
        # checked at every read, not at listing: a file or folder swapped for a link afterwards is caught too
        if not Path(os.path.realpath(path)).is_relative_to(self._real_root):
            raise UnreadableImage(f"symbolic link to outside the dataset folder: {path}")
        return _read_file(path)


class ZipSource(Source):
    """A .zip of an image folder, read member by member without extracting.

    A single wrapping folder (zip of `dataset/` holding `dataset/no/*`, `dataset/yes/*`) is looked through,
    unless it is a split name. Members with absolute paths, `..` components or symbolic links are rejected;
    a zip that would expand beyond `limits` (a zip bomb) is refused whole, before any member is read.
    """

    kind = "zip"

    def __init__(self, path: Path, limits: ExpansionLimits = DEFAULT_LIMITS) -> None:
        self._zip = _open_zip(path, limits)
        self._lock = threading.Lock()  # one file handle shared by reader threads
        found = zip_images(self._zip.infolist())
        if not found.members:
            self._zip.close()
            raise DataError(f"no images in {path} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))} members)")
        # the path below the wrapping folder -> the member's name inside the archive
        self._members = {name[len(found.prefix) :]: info.filename for name, info in found.members.items()}
        layout = Layout(list(self._members))
        super().__init__(
            str(path),
            [SampleRef(p, f"{path}:{self._members[p]}", label, split) for p, label, split in layout.items],
            layout.label_origin,
            layout.split_origin,
        )
        self.rejected = [
            Skipped(SampleRef(info.filename, f"{path}:{info.filename}"), f"{reason}: {info.filename!r}")
            for info, reason in found.refused
        ]

    def read_bytes(self, ref: SampleRef) -> bytes:
        member = self._members.get(ref.sample_id)
        if member is None:
            raise UnreadableImage(f"not in the archive: {ref.sample_id}")
        try:
            with self._lock:
                return self._zip.read(member)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            raise UnreadableImage(f"cannot read zip member {member}: {error}") from None

    def close(self) -> None:
        self._zip.close()


class CsvSource(Source):
    """A CSV manifest with a header row: `path` (required), optional `label` and `split` columns.

    Relative paths resolve against the CSV's folder. Rows whose file is missing stay listed, so they are
    reported as skipped ("file not found: ...") rather than silently dropped.
    """

    kind = "csv"

    def __init__(self, path: Path) -> None:
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.reader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise DataError(f"cannot read manifest {path}: {error}") from None
        if not rows:
            raise DataError(f"empty manifest: {path}")
        header = [name.strip().lower() for name in rows[0]]
        if "path" not in header:
            raise DataError(f"manifest {path} has no 'path' column (header: {', '.join(rows[0]) or 'empty'})")
        columns = {name: header.index(name) for name in ("path", "label", "split") if name in header}
        self._files: dict[str, Path] = {}
        refs = []
        first_row: dict[str, int] = {}
        for number, row in enumerate(rows[1:], start=2):
            cells = {name: (row[i].strip() if i < len(row) else "") for name, i in columns.items()}
            if not any(row) or not cells["path"]:
                continue  # blank line, or a row without a path
            sample_id = cells["path"].replace("\\", "/")
            if sample_id in first_row:
                raise DataError(f"manifest {path} lists {sample_id!r} twice (rows {first_row[sample_id]} and {number})")
            first_row[sample_id] = number
            file = Path(cells["path"]).expanduser()
            file = file if file.is_absolute() else path.parent / file
            self._files[sample_id] = file
            refs.append(SampleRef(sample_id, str(file), cells.get("label") or None, cells.get("split") or None))
        if not refs:
            raise DataError(f"manifest {path} lists no images")
        refs.sort(key=lambda r: r.sample_id)
        super().__init__(
            str(path),
            refs,
            "CSV column 'label'" if "label" in columns else "none",
            "CSV column 'split'" if "split" in columns else "none",
        )

    def read_bytes(self, ref: SampleRef) -> bytes:
        return _read_file(self._files[ref.sample_id])


class NpzSource(Source):
    """A MedMNIST-style .npz: `{train,val,test}_images` uint8 (N, H, W) or (N, H, W, 3) and `*_labels`.

    Labels shaped (N,) or (N, 1) are flattened and stored as strings ("0", "1"); a split without a
    labels array has no labels. The arrays are loaded once, at open.
    """

    kind = "npz"

    def __init__(self, path: Path, limits: ExpansionLimits = DEFAULT_LIMITS) -> None:
        # An .npz is a zip of .npy arrays: the same expansion limits, except that one array may hold
        # a whole dataset, so a member may be as large as the archive.
        _open_zip(path, dataclasses.replace(limits, max_member_bytes=limits.max_total_bytes)).close()
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise DataError(f"cannot read {path}: {error}") from None
        self._images: dict[str, np.ndarray] = {}
        refs = []
        has_labels = False
        for split in NPZ_SPLITS:
            images = arrays.get(f"{split}_images")
            if images is None:
                continue
            if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
                raise DataError(f"{path}: {split}_images must be (N, H, W) or (N, H, W, 3), got {images.shape}")
            if images.dtype.kind not in "buif":  # bool, unsigned, signed, float: anything else is not pixels
                raise DataError(f"{path}: {split}_images must hold numbers, got {images.dtype} values")
            labels = _npz_labels(arrays.get(f"{split}_labels"), len(images), f"{path}: {split}_labels")
            has_labels = has_labels or labels is not None
            self._images[split] = images
            for index in range(len(images)):
                label = labels[index] if labels is not None else None
                refs.append(SampleRef(f"{split}/{index}", f"{path}:{split}[{index}]", label, split))
        if not self._images:
            keys = ", ".join(sorted(arrays)) or "none"
            raise DataError(f"{path} has no train_images, val_images or test_images array (keys: {keys})")
        if not refs:
            raise DataError(f"no images in {path}: every *_images array is empty")
        super().__init__(str(path), refs, "npz *_labels arrays" if has_labels else "none", "npz array names")

    def read_bytes(self, ref: SampleRef) -> None:
        return None

    def read(self, ref: SampleRef) -> np.ndarray:
        """One image as stored: (H, W) or (H, W, 3)."""
        split, index = ref.sample_id.split("/")
        return self._images[split][int(index)]


class DigitsSource(Source):
    """scikit-learn's bundled digits (1797 images, 8×8), the offline demo; values 0..16 scaled to 0..255.

    No official split exists: a permutation seeded with 0 puts the first 70 % in "train", the rest in
    "test" (fixed, so runs are comparable).
    """

    kind = "digits"

    def __init__(self) -> None:
        from sklearn.datasets import load_digits  # imported here: only the demo needs scikit-learn

        digits = load_digits()
        self._images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8)
        count = len(self._images)
        order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(count)
        split = np.full(count, "test", dtype=object)
        split[order[: round(DIGITS_TRAIN_FRACTION * count)]] = "train"
        refs = [
            SampleRef(f"digits/{i}", f"sklearn digits[{i}]", str(int(digits.target[i])), str(split[i]))
            for i in range(count)
        ]
        super().__init__(
            "digits",
            refs,
            "scikit-learn digit targets",
            f"fixed split: permutation seeded {DIGITS_SPLIT_SEED}, first 70% train",
        )

    def read_bytes(self, ref: SampleRef) -> None:
        return None

    def read(self, ref: SampleRef) -> np.ndarray:
        """One digit, (8, 8) uint8."""
        return self._images[int(ref.sample_id.split("/")[1])]


class Layout:
    """Labels and splits of an image folder, from its relative file paths ('/'-separated).

    `root/<split>/<label>/*` when every top-level folder holding images is a split name, else
    `root/<label>/*`; files directly in the root have no label. `items` is sorted by path.
    """

    def __init__(self, paths: list[str]) -> None:
        parts = {p: p.split("/") for p in paths}
        top_folders = {split[0] for split in parts.values() if len(split) > 1}
        by_split = bool(top_folders) and all(name.lower() in SPLIT_NAMES for name in top_folders)
        self.items: list[tuple[str, str | None, str | None]] = []
        for path in sorted(paths):
            names = parts[path]
            if by_split:
                split = names[0] if len(names) > 1 else None
                label = names[1] if len(names) > 2 else None
            else:
                split, label = None, (names[0] if len(names) > 1 else None)
            self.items.append((path, label, split))
        has_labels = any(label is not None for _, label, _ in self.items)
        if not has_labels:
            self.label_origin = "none"
        else:
            self.label_origin = "folder names under each split" if by_split else "folder names"
        self.split_origin = "top-level folder names" if by_split else "none"


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UnreadableImage(f"file not found: {path}") from None
    except OSError as error:
        raise UnreadableImage(f"cannot read file: {path}: {error.strerror or error}") from None


def _open_zip(path: Path, limits: ExpansionLimits) -> zipfile.ZipFile:
    """The open archive, after its central directory passed `limits`; DataError for a broken or bomb zip."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise DataError(f"cannot open {path} as a zip: {error}") from None
    problem = expansion_problem(archive.infolist(), limits)
    if problem:
        archive.close()
        raise DataError(
            f"refused {path}: the zip {problem}; nothing in it was read "
            "(for a real dataset this large, extract it and register the folder)"
        )
    return archive


def _npz_labels(labels: np.ndarray | None, count: int, what: str) -> list[str] | None:
    """Labels (N,) or (N, 1) as strings; integral floats print as integers ("1", not "1.0")."""
    if labels is None:
        return None
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{what} must be (N,) or (N, 1), got {labels.shape} (multi-label data is not supported)")
    if len(labels) != count:
        raise DataError(f"{what} has {len(labels)} entries for {count} images")
    if labels.dtype.kind == "f" and np.all(np.mod(labels, 1) == 0):
        labels = labels.astype(np.int64)
    return [str(value) for value in labels.tolist()]
