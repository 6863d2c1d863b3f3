"""The curator's acceptance (issue 12): a folder with planted unreadable files, an exact copy and near
duplicates (a JPEG re-encoded at quality 70, a 95 % centre crop) is registered; every planted file is listed
with its reason on the Data page, sent to the Review page's curation list, judged there, and found in the
export (the flagged list with reasons; the kept list without the unreadable, the copy and what was removed)."""

from __future__ import annotations

import csv
import io

from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from db import datasets, job_submit
from db.models import CurationItem, Review
from db.session import open_database
from tests.curation_folder import EXACT, NEAR, UNREADABLE, curation_folder
from tests.test_dashboard_pages import APP, TIMEOUT
from worker.loop import run_worker

PLANTED = {**{k: "unreadable: " + v for k, v in UNREADABLE.items()}}
PLANTED |= {k: f"duplicate of {v}" for k, v in EXACT.items()}
PLANTED |= {k: f"near duplicate of {v}" for k, v in NEAR.items()}


def rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_every_planted_file_is_listed_with_its_reason_reachable_in_review_and_in_the_export(app_data_dir, tmp_path):
    url = f"sqlite:///{app_data_dir / 'con2.db'}"
    sessions = open_database(url)
    folder = curation_folder(tmp_path / "planted")
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location=str(folder), name="planted")
        job_submit.submit_register(session=session, dataset_id=dataset.id)
    assert run_worker(url, once=True) == 1
    with sessions() as session:
        ids = datasets.sample_ids(session=session, dataset_id=dataset.id)

    # Data: every planted file in the quality flags, with its reason; all of them sent to review
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.selectbox(key="data_dataset").set_value(dataset.id).run()
    assert not at.exception, [e.value for e in at.exception]
    flags = next(d.value for d in at.dataframe if "problem" in d.value.columns)
    listed = dict(zip(flags["sample"], flags["problem"], strict=True))
    assert set(listed) == set(PLANTED)
    assert all(reason in listed[key] for key, reason in PLANTED.items()), listed
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Unreadable"], metrics["Duplicates"], metrics["Near duplicates"]) == ("3", "1", "2")
    captions = " ".join(c.value for c in at.caption)
    assert all(f"{key} · phash" in captions for key in NEAR)  # each near duplicate beside its original
    at.button(key="data_flags_add_all").click().run()
    assert not at.exception
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(CurationItem)) == len(PLANTED)

    # Review: the curation list holds every planted file with its reason; verdicts are saved as reviews
    review = AppTest.from_file(APP, default_timeout=TIMEOUT)
    review.session_state["review_queue"] = "Curation list"
    review.run()
    review.switch_page("dashboard/pages/review.py").run()
    review.selectbox(key="review_curation_dataset").set_value(dataset.id).run()
    assert not review.exception, [e.value for e in review.exception]
    shown = " ".join(m.value for m in review.markdown).replace("\\", "")  # markdown escapes dropped
    assert all(f"**{key}**" in shown and reason in shown for key, reason in PLANTED.items()), shown
    removed = "near/five-reencoded.jpg"
    assert f"review_curation_verdict_{ids[removed]}_remove" in [b.key for b in review.button], [
        (b.key, b.label) for b in review.button
    ]
    review.button(key=f"review_curation_verdict_{ids[removed]}_remove").click().run()
    assert not review.exception
    with sessions() as session:
        verdict = session.scalars(select(Review)).one()
        assert (verdict.sample_id, verdict.verdict, verdict.job_id) == (ids[removed], "remove", None)

    # Export: the flagged files with reasons and decisions; the kept files as a manifest
    from dashboard import curation

    flagged = {r["key"]: r for r in rows(curation.flagged_csv(dataset.id, ["remove"]))}
    assert set(flagged) == set(PLANTED)
    assert all(reason in flagged[key]["reasons"] for key, reason in PLANTED.items())
    assert flagged[removed]["decision"] == "left out: verdict remove" and flagged[removed]["verdict"] == "remove"
    assert all(flagged[k]["decision"] == "left out: unreadable" for k in UNREADABLE)
    assert flagged["twins/three-again.png"]["decision"] == "left out: exact duplicate of digits/3.png"
    assert flagged["near/seven-cropped.png"]["decision"] == "kept"
    kept = rows(curation.kept_csv(dataset.id, ["remove"]))
    assert sorted(r["key"] for r in kept) == sorted([f"digits/{i}.png" for i in range(10)] + ["near/seven-cropped.png"])
    assert all(r["path"].startswith(str(folder)) for r in kept)


def test_the_demo_digits_are_too_small_to_compare_and_the_data_page_says_so(app_data_dir):
    """8 × 8 digits: look-alikes would flood the near-duplicate list, so none are compared, and the page says why."""
    url = f"sqlite:///{app_data_dir / 'con2.db'}"
    sessions = open_database(url)
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location="digits", name="digits")
        job_submit.submit_register(session=session, dataset_id=dataset.id)
    assert run_worker(url, once=True) == 1
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.selectbox(key="data_dataset").set_value(dataset.id).run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Images"], metrics["Near duplicates"]) == ("1,797", "0")
    captions = " ".join(c.value for c in at.caption)
    assert "Near duplicates are not looked for among the 1,797 images under 16 px a side" in captions
