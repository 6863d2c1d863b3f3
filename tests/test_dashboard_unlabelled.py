"""The Data page on datasets without labels (a flat folder): counts, quality flags, thumbnails and the context
gallery all show. The folder is registered through the page and inventoried by a real worker run."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from worker.loop import run_worker

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
SHARED_DATA = ROOT.parent / "shared" / "data"
TIMEOUT = 120  # seconds per script run: the first imports torch and opens the database


@pytest.fixture
def empty_app(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("CON2_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CON2_WORKER", "off")  # the test runs the worker itself, once, when it wants
    monkeypatch.delenv("CON2_DATABASE_URL", raising=False)
    return f"sqlite:///{data_dir / 'con2.db'}"


def png(seed: int, side: int = 24) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def flat_folder(root: Path) -> Path:
    """Eight distinct images, a byte-identical copy of one, a truncated one; no label folders."""
    root.mkdir()
    for i in range(8):
        (root / f"scan_{i}.png").write_bytes(png(i))
    (root / "scan_copy.png").write_bytes(png(3))
    (root / "scan_broken.png").write_bytes(png(9)[:40])
    return root


def register_and_show(url: str, location: str) -> AppTest:
    """Register `location` on the Data page, let one worker pass inventory it, and open the Data page again."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.text_input(key="data_location").set_value(location)
    at.button(key="FormSubmitter:data_register_path-Register").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert run_worker(url, once=True) >= 1  # the demo's registration and this one
    at.run()  # the page keeps the new dataset picked; it now shows what the worker found
    assert not at.exception, [e.value for e in at.exception]
    return at


def check_data_page(at: AppTest, images: int, unreadable: int, duplicates: int) -> None:
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == f"{images:,}" and metrics["Labels"] == "0"
    assert metrics["Unreadable"] == str(unreadable) and metrics["Duplicates"] == str(duplicates)
    counts = at.dataframe[0].value
    assert list(counts.columns) == ["(no label)", "total"] and int(counts["total"].sum()) == images
    if unreadable or duplicates:
        problems = " ".join(at.dataframe[1].value["problem"])
        assert ("unreadable" in problems) == bool(unreadable) and ("duplicate of" in problems) == bool(duplicates)
    headers = [m.value for m in at.markdown]
    assert all(f"**{name}**" in headers for name in ("original", "invert", "flip", "equalize"))  # the gallery
    assert len(at.image) >= 1 + 4 * 4  # the thumbnail grid and four gallery rows of four images


def test_a_flat_folder_without_labels_shows_counts_flags_thumbnails_and_the_gallery(empty_app, tmp_path):
    folder = flat_folder(tmp_path / "flat")
    at = register_and_show(empty_app, str(folder))
    check_data_page(at, images=10, unreadable=1, duplicates=1)


@pytest.mark.skipif(not (SHARED_DATA / "br35h" / "no").is_dir(), reason="needs ../shared/data/br35h (absent)")
def test_the_br35h_no_folder_registered_by_path_shows_on_the_data_page(empty_app):
    folder = SHARED_DATA / "br35h" / "no"
    at = register_and_show(empty_app, str(folder))
    images = sum(1 for p in folder.iterdir() if p.is_file())
    check_data_page(at, images=images, unreadable=0, duplicates=int(at.metric[4].value))


def test_the_count_table_keeps_one_column_per_name_when_a_label_is_called_total(empty_app):
    """A label named 'total' (or the placeholder itself) must not collide with the table's own columns."""
    from dashboard import datasets as dataset_views
    from db import datasets
    from db.session import open_database

    sessions = open_database(empty_app)
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location="/nowhere", name="odd labels")
        datasets.upsert_samples(
            session=session,
            dataset_id=dataset.id,
            samples=[
                {"key": "a", "label": "total"},
                {"key": "b", "label": "2"},
                {"key": "c", "label": None},
                {"key": "d", "label": None},
            ],
        )
        dataset_id = dataset.id
    table = dataset_views.dataset_overview(dataset_id)["table"]
    assert list(table.columns) == ["2", "total", "(no label)", "(total)"]
    assert table["(total)"].tolist() == [4] and table["(no label)"].tolist() == [2]
