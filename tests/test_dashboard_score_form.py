"""The Score form says, before anything is scored, that a batch holds images the model's dataset holds too
(same file bytes, from the registration's hashes), and not when it holds none."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from dashboard.seed import seed_run
from db import datasets
from db.models import Sample
from db.session import open_database

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


@pytest.fixture
def two_datasets(tmp_path, monkeypatch):
    """A finished run (seeded) on a dataset whose samples carry hashes, and a batch sharing three of them."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("CON2_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CON2_WORKER", "off")
    monkeypatch.delenv("CON2_DATABASE_URL", raising=False)
    monkeypatch.delenv("CON2_AUTH_CONFIG", raising=False)
    url = f"sqlite:///{data_dir / 'con2.db'}"
    seeded = seed_run(url, samples=40, reviewed=0)
    sessions = open_database(url)
    with sessions.begin() as session:
        ids = session.scalars(select(Sample.id).where(Sample.dataset_id == seeded.dataset_id).order_by(Sample.id)).all()
        for i in ids:
            session.execute(update(Sample).where(Sample.id == i).values(sha256=f"{i:064x}"))
        batch = datasets.create_dataset(session=session, location=str(tmp_path / "batch"), name="batch")
        clean = datasets.create_dataset(session=session, location=str(tmp_path / "clean"), name="clean")
        rows = [{"key": f"{k}.png", "location": f"/b/{k}.png", "sha256": f"{ids[k]:064x}"} for k in range(3)]
        rows += [{"key": f"new{k}.png", "location": f"/b/new{k}.png", "sha256": f"{k + 10**6:064x}"} for k in range(5)]
        datasets.upsert_samples(session=session, dataset_id=batch.id, samples=rows)
        datasets.upsert_samples(session=session, dataset_id=clean.id, samples=rows[3:])
        batch_id, clean_id = batch.id, clean.id
    sessions.kw["bind"].dispose()
    return seeded, batch_id, clean_id


def queue_scoring(dataset_id: int) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("dashboard/pages/runs.py").run()
    at.selectbox(key="runs_score_dataset").set_value(dataset_id)
    at.button(key="FormSubmitter:runs_score-Queue scoring").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_score_form_names_training_images_inside_the_batch(two_datasets):
    seeded, batch_id, _ = two_datasets
    at = queue_scoring(batch_id)
    assert "Queued scoring job" in at.success[0].value
    warnings = [w.value for w in at.warning]
    assert any(f"3 images of this batch are byte-identical to images of the dataset run #{seeded.run_id}" in w
               for w in warnings), warnings  # fmt: skip


def test_the_score_form_is_quiet_for_a_batch_without_them(two_datasets):
    _, _, clean_id = two_datasets
    at = queue_scoring(clean_id)
    assert "Queued scoring job" in at.success[0].value
    assert not any("byte-identical" in w.value for w in at.warning)
