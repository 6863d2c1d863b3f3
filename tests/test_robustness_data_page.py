"""The bad-input corpus through the Data page: every dataset-shaped class of bad input of
tests/test_robustness.py, typed into the page's "Register a dataset" form (Streamlit's AppTest on a real
SQLite database), inventoried by a real `python -m worker --once` process, then looked at on the page.

Each case ends in one of three answers, all without an exception on the page: the form refuses the path
with one sentence and registers nothing; the registration job fails and the page says why in one
sentence; or the dataset is registered and the page shows the file as a thumbnail, flags it as
unreadable with its reason, or leaves it out (not an image type, hidden, outside the folder). A seeded
dataset with a run and verdicts, and a good folder registered in the same worker run, are unchanged
afterwards, and no input file changes. The answers become the Data page section of docs/robustness.md.
60 cases (55 classes) cost about 45 page runs, one worker process and one tiny training job that fails at once.

One module of about 530 lines on purpose: it is one table, `CASES_PAGE`, each row with the input it types
and the answer it expects, and the module-scoped `corpus` that runs every row through one worker process;
the builders and checkers here exist for those rows, so a split would leave each row read across two files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from dashboard import jobs
from dashboard.seed import seed_run
from dashboard.widgets import plain
from db.models import Dataset, Job, Review, Sample, Score
from db.roots import refusal
from db.session import open_database
from engine.config import DataConfig, RunConfig, ScoreConfig, TrainConfig
from tests.imagefiles import save
from tests.robustness_table import section_table
from tests.test_robustness import CASES, Inputs, noise, plain_folder, snapshot

pytestmark = pytest.mark.slow  # about 30 s: page runs, one worker process

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "streamlit_app.py")
TIMEOUT = 120  # seconds per script run: the first imports torch and opens the database
TINY = RunConfig(
    DataConfig(normal_label=None, image_size=8, holdout_fraction=0.0),
    TrainConfig(epochs=1, batch_size=8, encoder="resnet_small", device="cpu"),
    ScoreConfig(tta=1),
)  # normal label None: every image trains, as `con2 train --all`
LOCATION, REGISTER = "data_location", "FormSubmitter:data_register_path-Register"


@dataclass
class Shown:
    """What the Data page showed for one typed location: right after Register, and after the worker ran."""

    errors: list[str]  # st.error after Register
    successes: list[str]
    warnings: list[str]
    dataset_id: int | None = None
    job_status: str | None = None
    page_errors: list[str] = field(default_factory=list)  # st.error with the dataset selected
    metrics: dict[str, str] = field(default_factory=dict)
    flags: pd.DataFrame | None = None  # the quality-flags table
    captions: list[str] = field(default_factory=list)  # thumbnail captions
    exceptions: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)  # the register job's summary (not on the page; the worker's record)
    train_errors: list[str] | None = None  # st.error on the Train page, for the dataset that also trains


@dataclass(frozen=True)
class PageCase:
    """One class of bad input: `build` writes it and returns the path a user types; `check` asserts what
    the page showed and returns it in words for the table."""

    cls: str
    given: str
    build: Callable[[Inputs], Path]
    check: Callable[[Shown, Inputs], str]


def tmp(text: str, inputs: Inputs) -> str:
    """Page text as a user reads it (the page escapes Markdown syntax in it), temporary root as <tmp>."""
    return re.sub(r"\\([^\w\s]|_)", r"\1", text).replace(str(inputs.root), "<tmp>")


# --- the corpus: the CLI module's builders, typed into the form instead of --data ----------------------


def cli_case(cls: str, given: str) -> Callable[[Inputs], Path]:
    """The builder of the CLI case (cls, given); the path it passes as --data (or the messy folder)."""
    (case,) = [c for c in CASES if (c.cls, c.given) == (cls, given)]

    def build(inputs: Inputs) -> Path:
        args = case.build(inputs)
        return inputs.messy if args is None else Path(args[args.index("--data") + 1])

    return build


# --- answers ------------------------------------------------------------------------------------------


def refused(expected: str) -> Callable[[Shown, Inputs], str]:
    """The form said one sentence starting with `expected` (temporary root as <tmp>) and registered nothing."""

    def check(shown: Shown, inputs: Inputs) -> str:
        assert len(shown.errors) == 1 and not shown.successes and shown.dataset_id is None, shown
        text = tmp(shown.errors[0], inputs)
        assert text.startswith(expected), text
        return f"refused at the form: {text}"

    return check


def failed(expected: str) -> Callable[[Shown, Inputs], str]:
    """Registered, and the registration job failed; the page says so in one sentence."""

    def check(shown: Shown, inputs: Inputs) -> str:
        assert shown.dataset_id is not None and shown.job_status == "failed", shown
        (error,) = [tmp(e, inputs) for e in shown.page_errors]
        assert error.startswith(f"Registration failed: {expected}"), error
        assert "Traceback" not in error and len(error.splitlines()) == 1
        return f"registered, then the job failed; the page says: {error}"

    return check


def registered(images: int, unreadable: int = 0) -> Callable[[Shown, Inputs], str]:
    """Registered and inventoried: the page counts `images` images, `unreadable` of them flagged."""

    def check(shown: Shown, inputs: Inputs) -> str:
        assert_registered(shown)
        assert (shown.metrics["Images"], shown.metrics["Unreadable"]) == (str(images), str(unreadable)), shown.metrics
        flagged = "" if not unreadable else f", {unreadable} flagged unreadable"
        return f"registered: {images} image{'s' if images != 1 else ''}{flagged}"

    return check


def assert_registered(shown: Shown) -> None:
    assert shown.dataset_id is not None and not shown.errors and shown.job_status == "succeeded", shown
    assert not shown.page_errors, shown.page_errors


def flag_of(shown: Shown, key: str) -> str | None:
    if shown.flags is None or shown.flags.empty:
        return None
    flags = shown.flags
    if "kind" in flags.columns:  # readability is the question here; the folder's files show alike pictures
        flags = flags[flags["kind"] != "near duplicate"]
    problems = flags[flags["sample"] == key]["problem"].tolist()
    return problems[0] if problems else None


def thumbnailed(shown: Shown, key: str) -> bool:
    shown_key = plain(key)  # captions are shown escaped, a newline as a space
    return any(c == shown_key or c.startswith(f"{shown_key} · ") for c in shown.captions)


def file_in(key: str, expected: str, why: str = "") -> Callable[[Shown, Inputs], str]:
    """One file of a registered folder: 'thumbnail' (shown among the images), 'unreadable: <reason...>'
    (in the quality flags, with no thumbnail) or 'not listed' (neither; `why` says why)."""

    def check(shown: Shown, inputs: Inputs) -> str:
        assert_registered(shown)
        flag, thumb = flag_of(shown, key), thumbnailed(shown, key)
        if expected == "thumbnail":
            assert thumb and flag is None, (flag, shown.captions)
            return f"listed with a thumbnail among the {shown.metrics['Images']} images"
        if expected == "not listed":
            assert not thumb and flag is None, shown.captions
            assert not any(c.startswith(plain(key)) for c in shown.captions), shown.captions
            return f"not listed ({why}); the rest registered"
        assert flag is not None and not thumb, (key, shown.flags, shown.captions)
        flag = tmp(flag, inputs)
        assert flag.startswith(expected), flag
        return f"flagged in Quality flags: {flag}; the rest registered"

    return check


def zip_member(entry: str, reason: str) -> Callable[[Shown, Inputs], str]:
    """The zip registers with its 2 good members; the unsafe member is never read nor shown, and the
    registration job's summary records why."""

    def check(shown: Shown, inputs: Inputs) -> str:
        assert_registered(shown)
        assert shown.metrics["Images"] == "2" and shown.metrics["Unreadable"] == "0", shown.metrics
        assert sorted(shown.captions) == ["a/0.png · a", "a/1.png · a"], shown.captions
        rejected = {r["entry"]: r["reason"] for r in shown.summary["rejected"]}
        if entry:
            assert rejected[entry] == reason, rejected
            return f"registered with the 2 good members shown; not listed on the page (the job records: {reason})"
        assert not any("inner" in c for c in shown.captions)
        return "registered with the 2 good members shown; the zip inside is not opened and not listed"

    return check


def with_warning(expected: str, check: Callable[[Shown, Inputs], str]) -> Callable[[Shown, Inputs], str]:
    """`check`, after the form also warned with one sentence starting with `expected`."""

    def run_check(shown: Shown, inputs: Inputs) -> str:
        (warning,) = [tmp(w, inputs) for w in shown.warnings]
        assert warning.startswith(expected), warning
        return f"the form warned: {warning} Then {check(shown, inputs)}"

    return run_check


def counted(metric: str, value: int, check: Callable[[Shown, Inputs], str]) -> Callable[[Shown, Inputs], str]:
    def run_check(shown: Shown, inputs: Inputs) -> str:
        answer = check(shown, inputs)
        assert shown.metrics[metric] == str(value), shown.metrics
        return f"{answer}; {metric}: {value}"

    return run_check


def then_train_fails(expected: str) -> Callable[[Shown, Inputs], str]:
    """Registered (1 image); a tiny training run queued on it as the Train page does fails, and the Train
    page shows the reason as one sentence."""

    def check(shown: Shown, inputs: Inputs) -> str:
        answer = registered(1)(shown, inputs)
        assert shown.train_errors is not None
        (error,) = [tmp(e, inputs) for e in shown.train_errors]
        assert error.startswith(expected) and "Error:" not in error, error
        return f"{answer}; a training run on it fails and the Train page says: {error}"

    return check


def messy(cls: str, given: str, key: str, expected: str, why: str = "") -> PageCase:
    return PageCase(cls, given, cli_case(cls, given), file_in(key, expected, why))


CASES_PAGE = [
    # one messy folder, one registration: each file is a class
    messy("truncated file", "JPEG cut after 1000 bytes", "truncated.jpg", "unreadable: truncated image data"),
    messy("zero-byte file", "empty .png", "empty.png", "unreadable: empty file (0 bytes)"),
    messy("wrong extension", "a text file named .png", "notes.png", "unreadable: not an image"),
    messy("wrong extension", "PNG bytes named .jpg", "really-png.jpg", "thumbnail"),
    messy("decompression bomb", "PNG header of 20000×20000 px in 50 kB", "bomb.png",
          "unreadable: image too large: 20000×20000"),
    messy("16-bit", "16-bit greyscale PNG", "sixteen.png", "thumbnail"),
    messy("palette", "palette PNG with a transparent colour", "pal.png", "thumbnail"),
    messy("CMYK", "CMYK JPEG", "cmyk.jpg", "thumbnail"),
    messy("RGBA", "PNG with half-transparent pixels", "alpha.png", "thumbnail"),
    messy("float TIFF", "32-bit float TIFF (mode F)", "float.tif", "thumbnail"),
    messy("animated GIF", "3-frame GIF (the first frame is used)", "anim.gif", "thumbnail"),
    messy("multi-page TIFF", "3-page TIFF (the first page is used)", "pages.tif", "thumbnail"),
    messy("SVG", "drawing.svg", "drawing.svg", "not listed", ".svg is not an image type con2 reads"),
    messy("HEIC", "photo.heic", "photo.heic", "not listed", ".heic is not an image type con2 reads"),
    messy("HEIC", "a HEIC photo renamed .jpg", "heic-renamed.jpg", "unreadable: not an image"),
    messy("corrupt pixel data", "PNG whose compressed pixels are overwritten", "garbled.png", "unreadable: "),
    messy("EXIF-rotated", "JPEG stored sideways with orientation 6", "sideways.jpg", "thumbnail"),
    messy("1×1", "a one-pixel PNG", "dot.png", "thumbnail"),
    messy("4000×2", "a 4000×2 strip", "strip.png", "thumbnail"),
    messy("unicode file name", "ünïcødé-日本.png", "ünïcødé-日本.png", "thumbnail"),
    messy("newline in file name", "line\nbreak.png", "line\nbreak.png", "thumbnail"),
    messy("HTML in file name", "<img src=x onerror=alert(1)>.png", "<img src=x onerror=alert(1)>.png", "thumbnail"),
    messy("hidden file", "._scan.png (a macOS resource fork)", "._scan.png", "not listed", "hidden files are ignored"),
    messy("symlink loop", "loop.png → loop.png", "loop.png", "unreadable: cannot read file: "),
    messy("dangling symlink", "gone.png → a deleted file", "gone.png", "unreadable: file not found"),
    messy("symlink outside", "leak.png → an image outside the folder", "leak.png",
          "unreadable: symbolic link to outside the dataset folder"),
    messy("symlink outside", "linked/ → a folder outside the folder", "linked/secret.png", "not listed",
          "linked folders are not descended"),
]  # fmt: skip


def at_path(cls: str, given: str, check: Callable[[Shown, Inputs], str]) -> PageCase:
    return PageCase(cls, given, cli_case(cls, given), check)


CASES_PAGE += [
    # zips
    at_path("zip with ../ member", "member '../evil.png'",
            zip_member("../evil.png", "zip member with a '..' path: '../evil.png'")),
    at_path("zip with absolute member", "member '/abs/evil.png'",
            zip_member("/abs/evil.png", "zip member with an absolute path: '/abs/evil.png'")),
    at_path("zip with symlink member", "member 'set/a/link.png' → /etc/passwd",
            zip_member("set/a/link.png", "zip member with a symbolic link: 'set/a/link.png'")),
    at_path("nested zip", "a .zip inside the .zip", zip_member("", "")),
    at_path("zip bomb", "5 MB zip holding one 1.03 GB member",
            refused("Cannot use <tmp>/inputs/bomb.zip: refused <tmp>/inputs/bomb.zip: the zip expands to 1.0 GB")),
    at_path("not a zip", "text named .zip", refused("Cannot use <tmp>/inputs/fake.zip: cannot open")),
    # manifests
    at_path("CSV without header", "rows of paths, no 'path' header",
            refused("Cannot use <tmp>/inputs/noheader.csv: manifest <tmp>/inputs/noheader.csv has no 'path' column")),
    at_path("CSV with duplicate rows", "the same path twice",
            refused("Cannot use <tmp>/inputs/dup.csv: manifest <tmp>/inputs/dup.csv lists 'a.png' twice")),
    at_path("CSV with ../ rows", "row '../beside/up.png'",
            with_warning("1 of the 5 files the manifest names do not exist", file_in("../beside/up.png", "thumbnail"))),
    at_path("CSV row naming a missing file", "row 'missing.png'",
            with_warning("1 of the 5 files the manifest names do not exist",
                         file_in("missing.png", "unreadable: file not found"))),
    at_path("CSV that is not text", "binary bytes named .csv",
            refused("Cannot use <tmp>/inputs/binary.csv: cannot read manifest")),
    at_path("empty CSV", "a 0-byte .csv", refused("Cannot use <tmp>/inputs/empty.csv: empty manifest")),
    # npz
    at_path("npz with wrong keys", "arrays 'x' and 'y'",
            refused("Cannot use <tmp>/inputs/keys.npz: <tmp>/inputs/keys.npz has no train_images")),
    at_path("npz with wrong shapes", "train_images of shape (4, 64)",
            refused("Cannot use <tmp>/inputs/shape.npz: <tmp>/inputs/shape.npz: train_images must be (N, H, W)")),
    at_path("npz with wrong dtypes", "train_images of strings",
            refused("Cannot use <tmp>/inputs/dtype.npz: <tmp>/inputs/dtype.npz: train_images must hold numbers")),
    at_path("npz with wrong dtypes", "an object array (needs pickle)",
            refused("Cannot use <tmp>/inputs/object.npz: cannot read <tmp>/inputs/object.npz")),
    at_path("npz with mismatched labels", "4 images, 3 labels",
            refused("Cannot use <tmp>/inputs/labels.npz: <tmp>/inputs/labels.npz: train_labels has 3 entries")),
    at_path("float images", "npz of float32 in 0..1", registered(4)),
    at_path("NaN images", "npz whose training images are all NaN",
            counted("Unreadable", 4, file_in("train/0", "unreadable: no pixel values: every value is NaN"))),
    at_path("npz bomb", "64 MB of zeros compressed 1000:1",
            refused("Cannot use <tmp>/inputs/bomb.npz: refused <tmp>/inputs/bomb.npz: the zip expands to 64.0 MB")),
    at_path("not an npz", "text named .npz", refused("Cannot use <tmp>/inputs/fake.npz: cannot open")),
    # whole datasets
    at_path("one image", "a folder of one PNG",
            then_train_fails("only one trainable image (only.png): training compares images with each other")),
    at_path("identical images", "6 copies of one grey image", counted("Duplicates", 5, registered(6))),
    at_path("empty folder", "a folder holding only a .txt", refused("Cannot use <tmp>/inputs/nothing: no images")),
    at_path("only broken files", "a folder of 2 unreadable .png",
            counted("Unreadable", 2, file_in("b.png", "unreadable: empty file (0 bytes)"))),
    at_path("unsupported source", "a .txt given as --data",
            refused("Cannot use <tmp>/inputs/data.txt: unsupported source")),
]  # fmt: skip


# typed locations the form itself must answer, and a folder that disappears before the worker reads it
def volatile(inputs: Inputs) -> Path:
    """Beside inputs/: what these cases leave or delete is not part of the unchanged-inputs check."""
    return inputs.root / "volatile"


def outside_link(inputs: Inputs) -> Path:
    link = volatile(inputs) / "etc-link"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("/etc", target_is_directory=True)
    return link


def doomed_folder(inputs: Inputs) -> Path:
    """Two good images in a folder the fixture deletes after Register and before the worker runs."""
    folder = volatile(inputs) / "doomed"
    for i in range(2):
        save(folder / f"{i}.png", noise((8, 8), 40 + i, "L"))
    return folder


def outside_roots(shown: Shown, inputs: Inputs) -> str:
    """Refused with the one sentence that never says whether the path exists."""
    answer = refused("")(shown, inputs)
    location = tmp(shown.errors[0], inputs).split(" is not inside ")[0]
    assert tmp(shown.errors[0], inputs) == tmp(refusal(location), inputs) + ".", shown.errors
    return answer


CASES_PAGE += [
    PageCase("outside the data roots", "/etc (exists)", lambda inputs: Path("/etc"), outside_roots),
    PageCase("outside the data roots", "/no-such-folder (does not exist)",
             lambda inputs: Path("/no-such-folder"), outside_roots),
    PageCase("symlink outside the data roots", "a link inside the roots to /etc", outside_link, outside_roots),
    PageCase("../ in the typed path", "<tmp>/inputs/ then ../ thirty times, then etc",
             lambda inputs: Path(f"{inputs.root}/inputs/{'../' * 30}etc"), outside_roots),
    PageCase("relative path", "scans/2024", lambda inputs: Path("scans/2024"),
             refused("'scans/2024' is not an absolute path")),
    PageCase("missing path", "<tmp>/inputs/nowhere", lambda inputs: inputs.input("nowhere"),
             refused("Nothing exists at <tmp>/inputs/nowhere")),
    PageCase("folder deleted after Register", "a folder removed before the worker reads it", doomed_folder,
             failed("no such file or folder: <tmp>/volatile/doomed")),
]  # fmt: skip


# --- running it -----------------------------------------------------------------------------------------


def count(url: str, model: type, **where) -> int:
    with open_database(url).begin() as session:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return int(session.scalar(query))


def stored(url: str, dataset_id: int) -> dict[str, int]:
    """What must survive: the datasets, the verdicts, the run's scores and the seeded dataset's samples."""
    return {"datasets": count(url, Dataset), "reviews": count(url, Review), "scores": count(url, Score),
            "samples": count(url, Sample, dataset_id=dataset_id)}  # fmt: skip


def page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Data"
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def register(at: AppTest, location: Path) -> Shown:
    at.text_input(key=LOCATION).set_value(str(location))
    at.button(key=REGISTER).click().run()
    shown = Shown(texts(at.error), texts(at.success), texts(at.warning))
    shown.exceptions = [str(e.value) for e in at.exception]
    if shown.successes:
        shown.dataset_id = int(at.session_state["data_dataset"])
    return shown


def look(at: AppTest, shown: Shown, url: str) -> None:
    """Select the dataset on the page and read what it shows."""
    at.selectbox(key="data_dataset").set_value(shown.dataset_id).run()
    shown.exceptions += [str(e.value) for e in at.exception]
    shown.page_errors = texts(at.error)
    shown.metrics = {m.label: str(m.value) for m in at.metric}
    tables = [d.value for d in at.dataframe if "problem" in getattr(d.value, "columns", [])]
    shown.flags = tables[0] if tables else None
    shown.captions = [c for image in at.image for c in image.captions if c]  # the gallery's have none
    with open_database(url).begin() as session:
        job = session.scalars(
            select(Job).where(Job.dataset_id == shown.dataset_id, Job.kind == "register").order_by(Job.id.desc())
        ).first()
        if job is not None:  # a seeded dataset has no register job
            shown.job_status, shown.summary = job.status, job.summary or {}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Build every case, register each distinct location through the form, run one worker over the queue,
    then look at each registered dataset on the page."""
    root = tmp_path_factory.mktemp("datapage")
    inputs = Inputs(root / "corpus")
    for name in ("inputs", "outs", "markers"):
        (inputs.root / name).mkdir(parents=True)
    data_dir = root / "data"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'con2.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CON2_DATA_DIR", str(data_dir))
        env.setenv("CON2_WORKER", "off")  # the page starts no worker; the test runs one
        env.setenv("CON2_REVIEWER", "ada")
        env.delenv("CON2_DATABASE_URL", raising=False)
        seeded = seed_run(url, samples=40, reviewed=5)  # stored before: a dataset, a run and verdicts
        before = stored(url, seeded.dataset_id)
        locations = [case.build(inputs) for case in CASES_PAGE]
        for i in range(4):  # ordinary images, so the messy folder has good ones beside its odd files
            save(inputs.messy / "plain" / f"{i}.png", noise((16, 16), 30 + i, "L"))
        good = plain_folder(inputs)
        files_before = snapshot(inputs.root / "inputs")

        at = page()
        seeded_before = Shown([], [], [], dataset_id=seeded.dataset_id)
        look(at, seeded_before, url)  # the seeded dataset as the page shows it before any registration
        good_shown = register(at, good)  # a good folder registered first, inventoried in the same worker run
        distinct = list(dict.fromkeys(locations))
        shown = {location: register(at, location) for location in distinct}
        trains = next(shown[loc] for case, loc in zip(CASES_PAGE, locations, strict=True) if case.cls == "one image")
        queued = jobs.submit_training(trains.dataset_id, TINY)  # what the Train page's form submits
        assert queued.error is None, queued.error
        shutil.rmtree(volatile(inputs) / "doomed")  # registered, then gone before the worker reads it
        worker = subprocess.run(
            [sys.executable, "-m", "worker", "--db", url, "--once", "--poll", "0.2"],
            cwd=REPO, capture_output=True, text=True, timeout=600, env=os.environ.copy(),
        )  # fmt: skip
        assert worker.returncode == 0, worker.stderr[-3000:]
        at = page()
        seeded_after = Shown([], [], [], dataset_id=seeded.dataset_id)
        for result in [seeded_after, good_shown, *shown.values()]:
            if result.dataset_id is not None:
                look(at, result, url)
        at.switch_page("dashboard/pages/train.py").run()
        at.selectbox(key="train_watch_pick").set_value(queued.job_id).run()
        assert not at.exception, [e.value for e in at.exception]
        trains.train_errors = texts(at.error)
        after = stored(url, seeded.dataset_id)
        yield {
            "inputs": inputs,
            "shown": [shown[location] for location in locations],
            "good": good_shown,
            "seeded": (seeded_before, seeded_after),
            "stored": (before, after),
            "files": (files_before, snapshot(inputs.root / "inputs")),
            "registered": sum(s.dataset_id is not None for s in shown.values()),
        }


@pytest.fixture(scope="module")
def table():
    yield from section_table(
        "Data page (register by path)",
        "`tests/test_robustness_data_page.py`: each input's path typed into the Data page's Register form "
        "(Streamlit AppTest, SQLite database), one `python -m worker --once` over all registrations, "
        "then the dataset selected on the page; the messy folder's files register together as one dataset.",
        len(CASES_PAGE),
    )


@pytest.mark.parametrize("index", range(len(CASES_PAGE)), ids=[f"{c.cls}: {c.given}" for c in CASES_PAGE])
def test_bad_input_gets_a_clear_answer_on_the_data_page(corpus, table, index):
    case, shown = CASES_PAGE[index], corpus["shown"][index]
    assert not shown.exceptions, shown.exceptions
    for text in shown.errors + shown.page_errors + shown.warnings:
        assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    table.add(case.cls, case.given, case.check(shown, corpus["inputs"]))


def test_nothing_stored_is_lost(corpus):
    before, after = corpus["stored"]
    assert after == before | {"datasets": before["datasets"] + 1 + corpus["registered"]}
    seeded_before, seeded_after = corpus["seeded"]
    assert seeded_after.metrics == seeded_before.metrics and seeded_before.metrics["Images"] == str(before["samples"])
    assert seeded_after.flags.equals(seeded_before.flags) and seeded_after.captions == seeded_before.captions
    assert not seeded_before.exceptions and not seeded_after.exceptions
    good = corpus["good"]
    assert good.job_status == "succeeded" and good.metrics["Images"] == "4" and not good.exceptions


def test_no_input_is_changed_or_lost(corpus):
    before, after = corpus["files"]
    assert after == before


def test_the_data_page_corpus_covers_at_least_forty_classes():
    assert len({case.cls for case in CASES_PAGE}) >= 40
