"""The bad-input corpus through the command line: every class of bad input a user or an attacker can hand
`con2`, built in a temporary folder and run as a real `python -m engine` subprocess.

Each case states what it builds and what answer it expects; every run must end with one `error:` line
(exit status 2, or 1 for a diverged training) or go on with the bad part skipped and named, never with
a traceback, and no input file may change or disappear. The answers become the CLI section of
docs/robustness.md (see tests/robustness_table.py). Per-file cases share one training run on one messy
folder, so 72 cases (over fifty classes) cost 43 subprocesses, run two at a time.

One module of about 680 lines on purpose: it is one table, `CASES`, each row a class of bad input with the
builder of that input and the answer it expects side by side, and the builders and checkers above it exist
for those rows; split, a reader would follow each row across two files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.imagefiles import huge_png, save
from tests.robustness_table import section_table

pytestmark = pytest.mark.slow  # 43 subprocesses, two at a time: about 4 CPU-minutes

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--image-size", "8", "--encoder", "resnet_small", "--epochs", "1", "--batch-size", "8", "--tta", "1"]
QUICK += ["--quiet"]


@dataclass
class Inputs:
    """Where a case writes: `inputs/` holds everything a run is given (checked unchanged afterwards),
    `outs/` what runs write."""

    root: Path

    @property
    def messy(self) -> Path:
        return self.root / "inputs" / "messy"

    def input(self, name: str) -> Path:
        return self.root / "inputs" / name

    def out(self, name: str) -> Path:
        return self.root / "outs" / name

    @property
    def model(self) -> Path:
        """A real model.pt, trained on the plain folder before any case is built."""
        return self.out("reference") / "model.pt"

    def marker(self, name: str) -> Path:
        return self.root / "markers" / name


@dataclass
class Outcome:
    returncode: int
    stdout: str
    text: str  # stderr, temporary root replaced by <tmp>
    out: Path | None  # the --out folder, when the command had one


@dataclass(frozen=True)
class Case:
    """One class of bad input. `build` writes it and returns the con2 arguments (None: a file in the
    shared messy folder); `check` asserts the answer and returns it in words for the table."""

    cls: str
    given: str
    build: Callable[[Inputs], list[str] | None]
    check: Callable[[Outcome, Inputs], str]


def con2(args: list[str], root: Path) -> Outcome:
    result = subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    out = Path(args[args.index("--out") + 1]) if "--out" in args else None
    return Outcome(result.returncode, result.stdout, result.stderr.replace(str(root), "<tmp>"), out)


# --- answers ------------------------------------------------------------------------------------------


def error(expected: str, status: int = 2) -> Callable[[Outcome, Inputs], str]:
    """The run stopped with exactly one line starting `error: <expected>`."""

    def check(outcome: Outcome, inputs: Inputs) -> str:
        assert outcome.returncode == status, outcome.text
        assert outcome.text.startswith(f"error: {expected}"), outcome.text
        return f"exit {status}: {outcome.text.strip()}"

    return check


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def messy_file(sample_id: str, expected: str) -> Callable[[Outcome, Inputs], str]:
    """One file of the messy folder: 'trained' (in scores.csv), 'skipped: <reason...>' (in skipped.csv,
    the reason starting as given) or 'not listed' (neither: not an image name, hidden, a linked folder)."""

    def check(outcome: Outcome, inputs: Inputs) -> str:
        assert outcome.returncode == 0 and outcome.out is not None, outcome.text
        scored = {r["sample_id"] for r in rows(outcome.out / "scores.csv")}
        skipped = {r["sample_id"]: r["reason"] for r in rows(outcome.out / "skipped.csv")}
        if sample_id in scored:
            answer = "trained and scored with the rest"
        elif sample_id in skipped:
            reason = skipped[sample_id].replace(str(inputs.root), "<tmp>")
            answer = f"skipped: {reason}"
            assert f"skipped {outcome_location(inputs, sample_id)}: " in outcome.text  # also said on stderr
        else:
            answer = "not listed"
            assert not any(s.startswith(sample_id) for s in scored | set(skipped))
        assert answer.startswith(expected), answer
        return answer if expected != "not listed" else f"not listed ({NOT_LISTED[sample_id]}); the rest trained"

    return check


def outcome_location(inputs: Inputs, sample_id: str) -> str:
    return str(inputs.messy / sample_id).replace(str(inputs.root), "<tmp>")


NOT_LISTED = {
    "drawing.svg": ".svg is not an image type con2 reads",
    "photo.heic": ".heic is not an image type con2 reads",
    "._scan.png": "hidden files are ignored",
    "linked/secret.png": "linked folders are not descended",
}


def inspect_report(check: Callable[[dict, Inputs], str]) -> Callable[[Outcome, Inputs], str]:
    def run_check(outcome: Outcome, inputs: Inputs) -> str:
        assert outcome.returncode == 0, outcome.text
        return check(json.loads(outcome.stdout), inputs)

    return run_check


# --- inputs -------------------------------------------------------------------------------------------


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def noise(size: tuple[int, int], seed: int, mode: str = "RGB") -> Image.Image:
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, shape, np.uint8))


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def plain_folder(inputs: Inputs) -> Path:
    """Four ordinary images: the data of the cases about flags and models."""
    folder = inputs.input("plain")
    if not folder.exists():
        for i in range(4):
            save(folder / f"{i}.png", noise((16, 16), i, "L"))
    return folder


def messy(write_file: Callable[[Path], object]) -> Callable[[Inputs], None]:
    def build(inputs: Inputs) -> None:
        write_file(inputs.messy)

    return build


def frames(path: Path, fmt: str) -> None:
    images = [Image.new("L", (16, 16), value) for value in (0, 128, 255)]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, fmt, save_all=True, append_images=images[1:])


def exif_rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    write(path, encoded(noise((32, 16), 3), "JPEG", exif=exif.tobytes()))


def palette_with_transparency(path: Path) -> None:
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 200, 50, 50] + [0] * 762)
    write(path, encoded(image, "PNG", transparency=0))


def corrupt_png(path: Path) -> None:
    data = bytearray(encoded(noise((32, 32), 4), "PNG"))
    data[100:140] = b"\xff" * 40  # inside the compressed pixel data: the header still parses
    write(path, bytes(data))


def link(path: Path, target: Path, directory: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target, target_is_directory=directory)


def outside_secret(inputs: Inputs) -> Path:
    """An image elsewhere on the machine, which no link in a registered folder may expose."""
    secret = inputs.root / "elsewhere" / "secret.png"
    if not secret.exists():
        save(secret, Image.new("L", (8, 8), 255))
    return secret


def messy_args(inputs: Inputs) -> list[str]:
    out = str(inputs.out("messy"))
    return ["train", "--data", str(inputs.messy), "--all", "--holdout-fraction", "0", "--out", out, *QUICK]


def train_args(inputs: Inputs, data: Path, name: str, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--all", "--holdout-fraction", "0", "--out", str(inputs.out(name)), *QUICK,
            *extra]  # fmt: skip


def zip_with(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16  # as `zip -y` stores a symbolic link
            archive.writestr(info, target)
    return path


def unsafe_zip(inputs: Inputs) -> list[str]:
    png = encoded(noise((8, 8), 5, "L"), "PNG")
    inner = zip_with(inputs.root / "inner.zip", {"hidden/x.png": png}).read_bytes()
    archive = zip_with(
        inputs.input("unsafe.zip"),
        {"set/a/0.png": png, "set/a/1.png": encoded(noise((8, 8), 6, "L"), "PNG"), "../evil.png": png,
         "/abs/evil.png": png, "set/a/inner.zip": inner},
        links={"set/a/link.png": "/etc/passwd"},
    )  # fmt: skip
    return ["inspect", "--data", str(archive), "--quiet"]


def zip_entry(name: str, reason: str) -> Callable[[dict, Inputs], str]:
    def check(report: dict, inputs: Inputs) -> str:
        rejected = {r["entry"]: r["reason"] for r in report["rejected"]}
        assert rejected[name] == reason, rejected
        assert report["images"] == 2  # the two good members are still read
        return f"rejected, never read: {reason}; the 2 good members are listed"

    return check


def nested_zip_check(report: dict, inputs: Inputs) -> str:
    assert report["images"] == 2 and "inner" not in json.dumps(report["by_label"])
    return "not listed (a zip inside a zip is not opened); the 2 good members are listed"


def zip_bomb(inputs: Inputs) -> list[str]:
    path = inputs.input("bomb.zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("scans/0/big.png", "w", force_zip64=True) as member:
            chunk = b"\0" * (1 << 24)
            for _ in range(66):  # 1.03 GiB of zeros in about 5 MB
                member.write(chunk)
    return ["inspect", "--data", str(path), "--quiet"]


def npz(name: str, **arrays: np.ndarray) -> Callable[[Inputs], list[str]]:
    def build(inputs: Inputs) -> list[str]:
        path = inputs.input(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
        return ["inspect", "--data", str(path), "--quiet"]

    return build


def npz_bomb(inputs: Inputs) -> list[str]:
    path = inputs.input("bomb.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, train_images=np.zeros((1024, 256, 256), np.uint8))  # 64 MB at about 1000:1
    return ["inspect", "--data", str(path), "--quiet"]


def npz_of_nan(inputs: Inputs) -> list[str]:
    path = inputs.input("nan.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, train_images=np.full((4, 8, 8), np.nan, np.float32), test_images=np.zeros((2, 8, 8), np.uint8))
    return train_args(inputs, path, "nan")


def float_npz_check(report: dict, inputs: Inputs) -> str:
    assert report["images"] == 4 and report["unreadable"] == []
    return "all 4 readable (floats in 0..1 are scaled to 0..255)"


def csv_file(name: str, data: bytes) -> Callable[[Inputs], list[str]]:
    return lambda inputs: ["inspect", "--data", str(write(inputs.input(name), data)), "--quiet"]


def manifest_with_escapes(inputs: Inputs) -> list[str]:
    folder = inputs.input("manifest")
    for i in range(3):
        save(folder / f"{i}.png", noise((8, 8), 10 + i, "L"))
    save(inputs.input("beside") / "up.png", noise((8, 8), 20, "L"))  # reached by ../ from the CSV's folder
    (folder / "list.csv").write_text("path\n0.png\n1.png\n2.png\n../beside/up.png\nmissing.png\n")
    return ["inspect", "--data", str(folder / "list.csv"), "--quiet"]


def manifest_row(sample_id: str, expected: str) -> Callable[[dict, Inputs], str]:
    def check(report: dict, inputs: Inputs) -> str:
        unreadable = {u["sample_id"]: u["reason"].replace(str(inputs.root), "<tmp>") for u in report["unreadable"]}
        if expected == "readable":
            assert sample_id not in unreadable and report["images"] == 5
            return "read like any other row (a manifest names files where they are)"
        assert unreadable[sample_id].startswith(expected), unreadable
        return f"listed as unreadable: {unreadable[sample_id]}; the other rows are read"

    return check


def folder_of(name: str, files: dict[str, bytes], command: str) -> Callable[[Inputs], list[str]]:
    def build(inputs: Inputs) -> list[str]:
        folder = inputs.input(name)
        folder.mkdir(parents=True, exist_ok=True)
        for file, data in files.items():
            write(folder / file, data)
        if command == "inspect":
            return ["inspect", "--data", str(folder), "--quiet"]
        return train_args(inputs, folder, name)

    return build


def identical(inputs: Inputs) -> list[str]:
    folder = inputs.input("identical")
    for i in range(6):
        save(folder / f"{i}.png", Image.new("L", (8, 8), 120))
    return train_args(inputs, folder, "identical")


def identical_check(outcome: Outcome, inputs: Inputs) -> str:
    assert outcome.returncode == 0, outcome.text
    scores = rows(outcome.out / "scores.csv")
    assert len(scores) == 6 and len({r["s_lh"] for r in scores}) == 1 and len({r["s_nnd"] for r in scores}) == 1
    return "trained and scored: all 6 get the same S_NND and S_LH"


def flags(*extra: str) -> Callable[[Inputs], list[str]]:
    return lambda inputs: train_args(inputs, plain_folder(inputs), "flags-" + "-".join(extra).strip("-"), *extra)


def config_file(inputs: Inputs) -> list[str]:
    path = write(inputs.input("run.json"), b"{not json")
    return [*train_args(inputs, plain_folder(inputs), "config-file"), "--config", str(path)]


def diverged(outcome: Outcome, inputs: Inputs) -> str:
    assert outcome.returncode == 1 and outcome.text.startswith("error: training diverged"), outcome.text
    assert len(outcome.text.strip().splitlines()) == 1
    return f"exit 1: {outcome.text.strip()}"


class RunsAShellCommand:
    """What an attacker pickles: unpickling it calls os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def score_with(name: str, make: Callable[[Inputs, Path], object]) -> Callable[[Inputs], list[str]]:
    def build(inputs: Inputs) -> list[str]:
        model = inputs.input(name)
        model.parent.mkdir(parents=True, exist_ok=True)
        make(inputs, model)
        out = str(inputs.out(f"score-{name}"))
        return ["score", "--model", str(model), "--data", str(plain_folder(inputs)), "--out", out, "--quiet"]

    return build


def malicious(inputs: Inputs, path: Path) -> None:
    torch.save({"format": 1, "state_dict": RunsAShellCommand(f"touch {inputs.marker(path.name)}")}, path)


def nan_weights(inputs: Inputs, path: Path) -> None:
    saved = torch.load(inputs.model, weights_only=True)
    first = next(k for k, v in saved["state_dict"].items() if v.is_floating_point())
    saved["state_dict"][first].fill_(float("nan"))
    torch.save(saved, path)


def not_a_bundle(inputs: Inputs, path: Path) -> None:
    torch.save(torch.load(inputs.model, weights_only=True)["state_dict"], path)


def refused_and_inert(marker: str) -> Callable[[Outcome, Inputs], str]:
    expected = error("refused to load ")

    def check(outcome: Outcome, inputs: Inputs) -> str:
        answer = expected(outcome, inputs)
        assert "(posix.system)" in outcome.text
        assert not inputs.marker(marker).exists()  # the payload never ran
        return answer + "; the payload did not run"

    return check


def rerun_with_checkpoint(name: str, make: Callable[[Inputs, Path], object]) -> Callable[[Inputs], list[str]]:
    """A train rerun into an --out that already holds a model and the given checkpoints/last.pt. The out
    folder is an input here: the refused rerun must leave its model.pt and checkpoint as they were."""

    def build(inputs: Inputs) -> list[str]:
        out = inputs.input(name)
        (out / "checkpoints").mkdir(parents=True)
        shutil.copy(inputs.model, out / "model.pt")
        make(inputs, out / "checkpoints" / "last.pt")
        return ["train", "--data", str(plain_folder(inputs)), "--all", "--holdout-fraction", "0", "--out", str(out),
                *QUICK]  # fmt: skip

    return build


CASES = [
    # one messy folder, one training run: each file is a class
    Case("truncated file", "JPEG cut after 1000 bytes",
         messy(lambda d: write(d / "truncated.jpg", encoded(noise((64, 64), 0), "JPEG")[:1000])),
         messy_file("truncated.jpg", "skipped: truncated image data")),
    Case("zero-byte file", "empty .png", messy(lambda d: write(d / "empty.png", b"")),
         messy_file("empty.png", "skipped: empty file (0 bytes)")),
    Case("wrong extension", "a text file named .png", messy(lambda d: write(d / "notes.png", b"hello\n")),
         messy_file("notes.png", "skipped: not an image")),
    Case("wrong extension", "PNG bytes named .jpg",
         messy(lambda d: write(d / "really-png.jpg", encoded(noise((16, 16), 1), "PNG"))),
         messy_file("really-png.jpg", "trained")),
    Case("decompression bomb", "PNG header of 20000×20000 px in 50 kB",
         messy(lambda d: write(d / "bomb.png", huge_png(20000, 20000))),
         messy_file("bomb.png", "skipped: image too large: 20000×20000")),
    Case("16-bit", "16-bit greyscale PNG",
         messy(lambda d: save(d / "sixteen.png", Image.fromarray(np.arange(0, 65536, 257, np.uint16).reshape(16, 16)))),
         messy_file("sixteen.png", "trained")),
    Case("palette", "palette PNG with a transparent colour", messy(lambda d: palette_with_transparency(d / "pal.png")),
         messy_file("pal.png", "trained")),
    Case("CMYK", "CMYK JPEG", messy(lambda d: save(d / "cmyk.jpg", Image.new("CMYK", (16, 16), (0, 128, 255, 0)))),
         messy_file("cmyk.jpg", "trained")),
    Case("RGBA", "PNG with half-transparent pixels",
         messy(lambda d: save(d / "alpha.png", Image.new("RGBA", (16, 16), (255, 0, 0, 128)))),
         messy_file("alpha.png", "trained")),
    Case("float TIFF", "32-bit float TIFF (mode F)",
         messy(lambda d: save(d / "float.tif", Image.fromarray(np.linspace(0, 1, 256, np.float32).reshape(16, 16)))),
         messy_file("float.tif", "trained")),
    Case("animated GIF", "3-frame GIF (the first frame is used)", messy(lambda d: frames(d / "anim.gif", "GIF")),
         messy_file("anim.gif", "trained")),
    Case("multi-page TIFF", "3-page TIFF (the first page is used)", messy(lambda d: frames(d / "pages.tif", "TIFF")),
         messy_file("pages.tif", "trained")),
    Case("SVG", "drawing.svg", messy(lambda d: write(d / "drawing.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>")),
         messy_file("drawing.svg", "not listed")),
    Case("HEIC", "photo.heic", messy(lambda d: write(d / "photo.heic", b"\0\0\0\x18ftypheic" + bytes(200))),
         messy_file("photo.heic", "not listed")),
    Case("HEIC", "a HEIC photo renamed .jpg",
         messy(lambda d: write(d / "heic-renamed.jpg", b"\0\0\0\x18ftypheic" + bytes(200))),
         messy_file("heic-renamed.jpg", "skipped: not an image")),
    Case("corrupt pixel data", "PNG whose compressed pixels are overwritten",
         messy(lambda d: corrupt_png(d / "garbled.png")),
         messy_file("garbled.png", "skipped: ")),
    Case("EXIF-rotated", "JPEG stored sideways with orientation 6", messy(lambda d: exif_rotated(d / "sideways.jpg")),
         messy_file("sideways.jpg", "trained")),
    Case("1×1", "a one-pixel PNG", messy(lambda d: save(d / "dot.png", Image.new("L", (1, 1), 200))),
         messy_file("dot.png", "trained")),
    Case("4000×2", "a 4000×2 strip", messy(lambda d: save(d / "strip.png", Image.new("L", (4000, 2), 90))),
         messy_file("strip.png", "trained")),
    Case("unicode file name", "ünïcødé-日本.png", messy(lambda d: save(d / "ünïcødé-日本.png", noise((16, 16), 2))),
         messy_file("ünïcødé-日本.png", "trained")),
    Case("newline in file name", "line\nbreak.png", messy(lambda d: save(d / "line\nbreak.png", noise((16, 16), 7))),
         messy_file("line\nbreak.png", "trained")),
    Case("HTML in file name", "<img src=x onerror=alert(1)>.png",
         messy(lambda d: save(d / "<img src=x onerror=alert(1)>.png", noise((16, 16), 8))),
         messy_file("<img src=x onerror=alert(1)>.png", "trained")),
    Case("hidden file", "._scan.png (a macOS resource fork)", messy(lambda d: write(d / "._scan.png", b"\0\5\26\7")),
         messy_file("._scan.png", "not listed")),
    Case("symlink loop", "loop.png → loop.png", messy(lambda d: link(d / "loop.png", d / "loop.png")),
         messy_file("loop.png", "skipped: cannot read file: ")),
    Case("dangling symlink", "gone.png → a deleted file", messy(lambda d: link(d / "gone.png", d / "deleted.png")),
         messy_file("gone.png", "skipped: file not found")),
    Case("symlink outside", "leak.png → an image outside the folder",
         lambda inputs: link(inputs.messy / "leak.png", outside_secret(inputs)),
         messy_file("leak.png", "skipped: symbolic link to outside the dataset folder")),
    Case("symlink outside", "linked/ → a folder outside the folder",
         lambda inputs: link(inputs.messy / "linked", outside_secret(inputs).parent, directory=True),
         messy_file("linked/secret.png", "not listed")),
    # zips
    Case("zip with ../ member", "member '../evil.png'", lambda inputs: unsafe_zip(inputs),
         inspect_report(zip_entry("../evil.png", "zip member with a '..' path: '../evil.png'"))),
    Case("zip with absolute member", "member '/abs/evil.png'", lambda inputs: unsafe_zip(inputs),
         inspect_report(zip_entry("/abs/evil.png", "zip member with an absolute path: '/abs/evil.png'"))),
    Case("zip with symlink member", "member 'set/a/link.png' → /etc/passwd", lambda inputs: unsafe_zip(inputs),
         inspect_report(zip_entry("set/a/link.png", "zip member with a symbolic link: 'set/a/link.png'"))),
    Case("nested zip", "a .zip inside the .zip", lambda inputs: unsafe_zip(inputs), inspect_report(nested_zip_check)),
    Case("zip bomb", "5 MB zip holding one 1.03 GB member", zip_bomb,
         error("refused <tmp>/inputs/bomb.zip: the zip expands to 1.0 GB in one member")),
    Case("not a zip", "text named .zip",
         lambda inputs: ["inspect", "--data", str(write(inputs.input("fake.zip"), b"PK but no")), "--quiet"],
         error("cannot open <tmp>/inputs/fake.zip as a zip")),
    # manifests
    Case("CSV without header", "rows of paths, no 'path' header", csv_file("noheader.csv", b"a.png\nb.png\n"),
         error("manifest <tmp>/inputs/noheader.csv has no 'path' column (header: a.png)")),
    Case("CSV with duplicate rows", "the same path twice", csv_file("dup.csv", b"path\na.png\na.png\n"),
         error("manifest <tmp>/inputs/dup.csv lists 'a.png' twice (rows 2 and 3)")),
    Case("CSV with ../ rows", "row '../beside/up.png'", manifest_with_escapes,
         inspect_report(manifest_row("../beside/up.png", "readable"))),
    Case("CSV row naming a missing file", "row 'missing.png'", manifest_with_escapes,
         inspect_report(manifest_row("missing.png", "file not found"))),
    Case("CSV that is not text", "binary bytes named .csv", csv_file("binary.csv", b"\xff\xfe\x00\x80 not text"),
         error("cannot read manifest <tmp>/inputs/binary.csv")),
    Case("empty CSV", "a 0-byte .csv", csv_file("empty.csv", b""), error("empty manifest: <tmp>/inputs/empty.csv")),
    # npz
    Case("npz with wrong keys", "arrays 'x' and 'y'", npz("keys.npz", x=np.zeros((2, 8, 8)), y=np.zeros(2)),
         error("<tmp>/inputs/keys.npz has no train_images, val_images or test_images array (keys: x, y)")),
    Case("npz with wrong shapes", "train_images of shape (4, 64)", npz("shape.npz", train_images=np.zeros((4, 64))),
         error("<tmp>/inputs/shape.npz: train_images must be (N, H, W) or (N, H, W, 3), got (4, 64)")),
    Case("npz with wrong dtypes", "train_images of strings", npz("dtype.npz", train_images=np.full((2, 4, 4), "x")),
         error("<tmp>/inputs/dtype.npz: train_images must hold numbers, got <U1 values")),
    Case("npz with wrong dtypes", "an object array (needs pickle)",
         npz("object.npz", train_images=np.array([None, 1], dtype=object)),
         error("cannot read <tmp>/inputs/object.npz: Object arrays cannot be loaded when allow_pickle=False")),
    Case("npz with mismatched labels", "4 images, 3 labels",
         npz("labels.npz", train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.zeros(3)),
         error("<tmp>/inputs/labels.npz: train_labels has 3 entries for 4 images")),
    Case("float images", "npz of float32 in 0..1",
         npz("float.npz", train_images=np.random.default_rng(0).random((4, 8, 8), dtype=np.float32)),
         inspect_report(float_npz_check)),
    Case("NaN images", "npz whose training images are all NaN", npz_of_nan,
         error("no trainable images: all 4 training images were skipped (first: train/0: no pixel values: every "
               "value is NaN or infinite)")),
    Case("npz bomb", "64 MB of zeros compressed 1000:1", npz_bomb,
         error("refused <tmp>/inputs/bomb.npz: the zip expands to 64.0 MB from")),
    Case("not an npz", "text named .npz",
         lambda inputs: ["inspect", "--data", str(write(inputs.input("fake.npz"), b"hello")), "--quiet"],
         error("cannot open <tmp>/inputs/fake.npz as a zip")),
    # whole datasets
    Case("one image", "a folder of one PNG", folder_of("one", {"only.png": encoded(noise((8, 8), 9), "PNG")}, "train"),
         error("only one trainable image (only.png): training compares images with each other and needs at least 2")),
    Case("identical images", "6 copies of one grey image", identical, identical_check),
    Case("empty folder", "a folder holding only a .txt", folder_of("nothing", {"readme.txt": b"hi"}, "inspect"),
         error("no images in <tmp>/inputs/nothing")),
    Case("only broken files", "a folder of 2 unreadable .png",
         folder_of("broken", {"a.png": b"x", "b.png": b""}, "train"),
         error("no trainable images: all 2 training images were skipped (first: a.png: not an image")),
    Case("unsupported source", "a .txt given as --data",
         lambda inputs: ["inspect", "--data", str(write(inputs.input("data.txt"), b"x")), "--quiet"],
         error("unsupported source <tmp>/inputs/data.txt: expected an image folder")),
    # numbers
    Case("absurd learning rate", "--lr 1e6", flags("--lr", "1e6"), diverged),
    Case("NaN number", "--lr nan", flags("--lr", "nan"), error("TrainConfig.lr: nan is not a finite number")),
    Case("out-of-range number", "--lr -1", flags("--lr", "-1"), error("TrainConfig.lr: -1.0 is below the minimum 0.0")),
    Case("out-of-range number", "--image-size 100000", flags("--image-size", "100000"),
         error("DataConfig.image_size: 100000 is above the maximum 512")),
    Case("out-of-range number", "--epochs 0", flags("--epochs", "0"),
         error("TrainConfig.epochs: 0 is below the minimum 1")),
    Case("out-of-range number", "--batch-size 1", flags("--batch-size", "1"),
         error("TrainConfig.batch_size: 1 is below the minimum 2 (0 = auto)")),
    Case("out-of-range number", "--holdout-fraction 2", flags("--holdout-fraction", "2"),
         error("DataConfig.holdout_fraction: 2.0 is above the maximum 0.9")),
    Case("not a number", "--image-size 8.5", flags("--image-size", "8.5"),
         error("DataConfig.image_size: '8.5' is not a valid int")),
    Case("tiny pixel limit", "--max-pixels 1 (every image too large)", flags("--max-pixels", "1"),
         error("no trainable images: all 4 training images were skipped (first: 0.png: image too large: 16×16")),
    Case("broken config file", "--config holding '{not json'", config_file,
         error("cannot read the config file <tmp>/inputs/run.json: ")),
    # model files
    Case("corrupt model", "model.pt of random bytes",
         score_with("garbage.pt", lambda inputs, p: p.write_bytes(b"garbage" * 10)),
         error("the model <tmp>/inputs/garbage.pt is corrupt or not a con2 file")),
    Case("corrupt model", "a real model.pt cut after 50 kB",
         score_with("cut.pt", lambda inputs, p: p.write_bytes(inputs.model.read_bytes()[:50_000])),
         error("the model <tmp>/inputs/cut.pt is corrupt or not a con2 file")),
    Case("corrupt model", "a 0-byte model.pt", score_with("empty.pt", lambda inputs, p: p.write_bytes(b"")),
         error("the model <tmp>/inputs/empty.pt is corrupt or not a con2 file (it ends early)")),
    Case("corrupt model", "a torch file that is not a con2 model (a bare state dict)",
         score_with("bare.pt", not_a_bundle),
         error("the model <tmp>/inputs/bare.pt is not a model a con2 train run wrote (no 'train_config')")),
    Case("corrupt model", "a model whose weights are NaN", score_with("nan.pt", nan_weights),
         error("the model <tmp>/inputs/nan.pt is broken: its weights hold NaN or infinite values")),
    Case("missing model", "--model naming a folder without model.pt",
         lambda inputs: ["score", "--model", str(plain_folder(inputs)), "--data", str(plain_folder(inputs)), "--out",
                         str(inputs.out("nomodel")), "--quiet"],
         error("no trained model at <tmp>/inputs/plain/model.pt")),
    Case("malicious model", "model.pt whose pickle calls os.system", score_with("evil.pt", malicious),
         refused_and_inert("evil.pt")),
    Case("malicious checkpoint", "checkpoints/last.pt calling os.system, on a train rerun",
         rerun_with_checkpoint("rerun-evil", malicious), refused_and_inert("last.pt")),
    Case("corrupt checkpoint", "checkpoints/last.pt of random bytes, on a train rerun",
         rerun_with_checkpoint("rerun-garbage", lambda inputs, p: p.write_bytes(np.random.default_rng(1).bytes(256))),
         error("the checkpoint <tmp>/inputs/rerun-garbage/checkpoints/last.pt is corrupt or not a con2 file")),
]  # fmt: skip


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder`: a file's sha256, a link's target (never followed)."""
    seen = {}
    for base, folders, files in os.walk(folder):
        for name in folders + files:
            path = Path(base) / name
            if path.is_symlink():
                seen[str(path)] = "link to " + os.readlink(path)
            elif path.is_file():
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Inputs, dict[int, Outcome], dict[str, str], dict[str, str]]:
    """Build every case, run every distinct command once (two at a time), and snapshot the inputs."""
    inputs = Inputs(tmp_path_factory.mktemp("corpus"))
    for name in ("inputs", "outs", "markers"):
        (inputs.root / name).mkdir()
    reference = con2(train_args(inputs, plain_folder(inputs), "reference"), inputs.root)
    assert reference.returncode == 0 and inputs.model.exists(), reference.text  # the model the model cases alter
    commands = {i: case.build(inputs) or messy_args(inputs) for i, case in enumerate(CASES)}
    for i in range(4):  # ordinary images, so the messy folder trains whatever its odd files do
        save(inputs.messy / "plain" / f"{i}.png", noise((16, 16), 30 + i, "L"))
    before = snapshot(inputs.root / "inputs")
    distinct = sorted({tuple(args) for args in commands.values()})
    with ThreadPoolExecutor(max_workers=2) as pool:
        ran = dict(zip(distinct, pool.map(lambda args: con2(list(args), inputs.root), distinct), strict=True))
    outcomes = {i: ran[tuple(args)] for i, args in commands.items()}
    return inputs, outcomes, before, snapshot(inputs.root / "inputs")


@pytest.fixture(scope="module")
def table():
    yield from section_table(
        "Command line (con2)",
        "`tests/test_robustness.py`: `python -m engine inspect`, `train` (image size 8, one epoch, `--tta 1`) or "
        "`score` on each input; the files of one messy folder train together in one run.",
        len(CASES),
    )


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c.cls}: {c.given}" for c in CASES])
def test_bad_input_gets_a_clear_answer(corpus, table, index):
    inputs, outcomes, _, _ = corpus
    case, outcome = CASES[index], outcomes[index]
    assert "Traceback" not in outcome.text, outcome.text
    if outcome.returncode != 0:
        lines = outcome.text.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), outcome.text
    table.add(case.cls, case.given, case.check(outcome, inputs))


def test_no_input_is_changed_or_lost(corpus):
    _, _, before, after = corpus
    assert after == before  # every file, link and refused --out folder as it was given


def test_the_corpus_covers_at_least_forty_classes():
    assert len({case.cls for case in CASES}) >= 40
