"""Every page through Streamlit's AppTest, against a seeded temporary SQLite database.

The database holds a synthetic finished run written through `db/` (dashboard.seed) and a second run that
is "running"; no worker runs (CON2_WORKER=off), so nothing changes under the tests' feet.

One module of about 460 lines on purpose: every page is tested the same way, against the one seeded database
and AppTest harness defined here (`seeded`, `app`), in one section a page; a module a page would repeat or
move that harness to serve sections of a few dozen lines each.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import sqlite3
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

from dashboard import widgets
from dashboard.seed import seed_other_run, seed_run
from db import datasets as db_datasets
from db import job_submit as db_job_submit
from db import jobs as db_jobs
from db.models import Dataset, Job, Review
from db.session import open_database
from engine.config import DataConfig, ScoreConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
TIMEOUT = 90  # seconds per script run: the first imports torch and opens the database


@pytest.fixture
def seeded(app_data_dir):
    data_dir = app_data_dir
    url = f"sqlite:///{data_dir / 'con2.db'}"
    return seed_run(url, samples=300, running=True, reviewed=0), url, data_dir


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page is not None:
        at.switch_page(f"dashboard/pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def count(url: str, model: type) -> int:
    sessions = open_database(url)
    with sessions.begin() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 100).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ Data


def test_data_page_shows_counts_quality_flags_thumbnails_and_the_context_gallery(seeded):
    at = app()
    assert at.title[0].value == "Data"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "376" and metrics["Unreadable"] == "1" and metrics["Duplicates"] == "1"
    flags = at.dataframe[1].value
    assert any("truncated image data" in p for p in flags["problem"]) and any(
        "duplicate of" in p for p in flags["problem"]
    )
    assert "total" in at.dataframe[0].value.columns  # the split × label table
    headers = [m.value for m in at.markdown]
    assert all(f"**{name}**" in headers for name in ("original", "invert", "flip", "equalize"))
    assert len(at.image) >= 1 + 4  # the thumbnail grid and the gallery rows


def test_data_page_registers_a_folder(seeded, tmp_path):
    _, url, _ = seeded
    folder = tmp_path / "scans"
    (folder / "normal").mkdir(parents=True)
    (folder / "normal" / "a.png").write_bytes(png_bytes())
    at = app()
    at.text_input(key="data_location").set_value(str(folder))
    at.button(key="FormSubmitter:data_register_path-Register").click().run()
    assert not at.exception
    assert "Registered 'scans'" in texts(at.success)[0] and "reading it now" not in texts(at.success)[0]
    # issue 12: its place in the queue, not that it is being read: the worker has not taken it yet
    shown = [p.proto.text.replace("\\", "") for p in at.get("progress")]  # as the browser shows it: unescaped
    assert shown == ["queued: next in line, waiting for the worker to take it"]
    assert count(url, Dataset) == 2
    sessions = open_database(url)
    with sessions.begin() as session:
        job = session.scalars(select(Job).order_by(Job.id.desc())).first()
        assert job.kind == "register" and job.status == "queued"


def bad_inputs(tmp_path: Path) -> dict[str, tuple[str, object]]:
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\nmissing/a.png,0\nmissing/b.png,1\n")
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("set/0/a.png", png_bytes())
        archive.writestr("../../escaped.png", png_bytes())
    return {
        "missing folder": ("path", str(tmp_path / "no-such-folder")),
        "csv naming missing files": ("path", str(manifest)),
        "zip slip": ("upload", ("set.zip", evil.getvalue(), "application/zip")),
        "oversized upload": ("upload", ("big.png", png_bytes() + b"\0" * 4096, "image/png")),
    }


EXPECTED = {
    "missing folder": "Nothing exists at",
    "csv naming missing files": "None of the 2 files the manifest list.csv names exist",
    "zip slip": "could write outside its folder; nothing was stored",
    "oversized upload": "over the 0.0 MB limit",
}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_bad_input_shows_a_clear_message_writes_nothing_and_loses_nothing(seeded, tmp_path, monkeypatch, case):
    _, url, data_dir = seeded
    monkeypatch.setenv("CON2_MAX_UPLOAD_MB", "0.002")  # 2 KB: the oversized upload is 4 KB
    kind, value = bad_inputs(tmp_path)[case]
    before = {p for p in tmp_path.rglob("*") if data_dir not in p.parents}
    datasets_before, reviews_before = count(url, Dataset), count(url, Review)
    at = app()
    if kind == "path":
        at.text_input(key="data_location").set_value(value)
        at.button(key="FormSubmitter:data_register_path-Register").click().run()
    else:
        at.file_uploader(key="data_upload").set_value(value)
        at.button(key="FormSubmitter:data_register_upload-Upload and register").click().run()
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1 and EXPECTED[case] in errors[0], errors
    assert not texts(at.success)
    after = {p for p in tmp_path.rglob("*") if data_dir not in p.parents}
    assert after == before  # nothing written outside the data directory (no escaped.png)
    assert not any((data_dir / "uploads").rglob("*.png")) if (data_dir / "uploads").exists() else True
    assert (count(url, Dataset), count(url, Review)) == (datasets_before, reviews_before)


# ------------------------------------------------------------------------------------------ Train


def test_train_form_has_every_config_field_with_its_help_and_queues_a_run(seeded):
    _, url, _ = seeded
    at = app("train")
    widgets_by_label = {w.label: w for kind in ("number_input", "selectbox", "checkbox", "text_input")
                        for w in getattr(at, kind)}  # fmt: skip
    for section, cls in widgets.SECTIONS.items():
        for f in dataclasses.fields(cls):
            if (section, f.name) in widgets.CHOSEN_OUTSIDE:
                continue
            widget = widgets_by_label[widgets.field_label(section, f.name)]
            assert f.metadata["help"] in widget.help, f.name
    assert at.radio(key="train_preset").value == "CPU (quick)"
    epochs = next(w for w in at.number_input if w.label == "Epochs")
    assert epochs.value == 60  # the CPU preset
    epochs.set_value(3)
    next(b for b in at.button if b.label == "Queue training run").click().run()
    assert not at.exception
    assert "Queued run #3" in texts(at.success)[0]
    sessions = open_database(url)
    with sessions.begin() as session:
        job = session.get(Job, 3)
        assert job.kind == "train" and job.status == "queued"
        assert job.config["train"]["epochs"] == 3 and job.config["data"]["normal_label"] == "0"
        assert job.config["data"]["train_split"] == "train" and job.config["score"]["tta"] == 2


def test_train_form_offers_the_classical_references_and_queues_one(seeded):
    """Issue 13: a classical method is a value of the form's Method field, its help says what it assumes."""
    _, url, _ = seeded
    at = app("train")
    method = next(w for w in at.selectbox if w.label == widgets.field_label("train", "method"))
    assert {"pixels_knn", "pixels_pca_knn", "pixels_iforest"} <= set(method.options)
    assert "aligned alike" in method.help
    method.set_value("pixels_iforest")
    next(b for b in at.button if b.label == "Queue training run").click().run()
    assert not at.exception
    assert "Queued run #3" in texts(at.success)[0]
    sessions = open_database(url)
    with sessions.begin() as session:
        assert session.get(Job, 3).config["train"]["method"] == "pixels_iforest"


def test_presets_match_their_promise():
    from dashboard.presets import preset_config

    cpu = preset_config("CPU (quick)", max_side=8)
    gpu = preset_config("GPU (closer to the paper)", max_side=512)
    # the CPU recipe scores x and x^c as they are; the GPU preset is the paper's 40 augmented views
    assert (cpu.data.image_size, cpu.train.encoder, cpu.score.tta, cpu.score.tta_augment) == (
        16,
        "auto",
        2,
        False,
    )
    assert cpu.train.encoder == TrainConfig().encoder  # the engine's default: chosen from the images at the start
    assert cpu.train.batch_size == TrainConfig().batch_size == 0  # auto: chosen from the images at the start
    assert (gpu.train.encoder, gpu.score.tta, gpu.score.tta_augment, gpu.train.amp) == ("resnet18", 40, True, True)
    assert (cpu.train.context_weight, gpu.train.context_weight) == (0.3, 1.0)
    assert gpu.data.image_size > cpu.data.image_size and gpu.train.epochs > cpu.train.epochs
    assert preset_config("CPU (quick)", normal_label=None).data.normal_label is None
    assert TrainConfig().method == cpu.train.method and DataConfig().seed == cpu.data.seed
    assert ScoreConfig().k == cpu.score.k
    paper = preset_config("Paper (as published)", normal_label="1")  # App. C–D, kept beside the CPU recipe
    assert (paper.data.image_size, paper.data.crop_fraction, paper.train.encoder) == (224, 0.875, "resnet18")
    assert (paper.train.epochs, paper.train.alpha_schedule, paper.train.context_weight) == (2048, "linear", 1.0)
    assert (paper.score.tta, paper.score.tta_augment) == (40, True)
    assert (paper.score.tta, paper.train.temperature, paper.train.lr) == (40, 0.2, 1e-3)
    # the CPU recipe's departures (docs/quality.md) are the defaults; the paper preset undoes every one
    assert (cpu.train.alpha_schedule, cpu.train.views_per_context, cpu.score.features) == ("constant", 1, "grid")
    assert (paper.train.views_per_context, paper.score.features, paper.score.batchnorm) == (2, "pooled", "training")


def test_train_page_shows_live_progress_and_cancels(seeded):
    seeded_run, url, _ = seeded
    at = app("train")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "running" and metrics["Phase"] == "training" and metrics["ETA"] == "42 s"
    assert any("epoch 5/30" in p.proto.text for p in at.get("progress"))
    cancel = at.button(key=f"train_cancel_{seeded_run.running_id}")
    cancel.click().run()
    sessions = open_database(url)
    with sessions.begin() as session:
        assert session.get(Job, seeded_run.running_id).cancel_requested


def test_the_queue_says_why_each_job_waits(seeded):
    """Issue 12: a training run queued behind the running one says so; a registration says it is next, in its own
    lane, however many trainings run or wait."""
    seeded_run, url, _ = seeded
    sessions = open_database(url)
    with sessions.begin() as session:
        config = db_jobs.read_job_config(session.get(Job, seeded_run.running_id)).run()
        waiting = db_job_submit.submit_train(
            session=session, dataset_id=seeded_run.dataset_id, config=config, name="second"
        ).id
        scans = db_datasets.create_dataset(session=session, location="digits", name="scans").id
        register = db_job_submit.submit_register(session=session, dataset_id=scans).id
    rows = [t.replace("\\", "") for t in texts(app("train").markdown) if t.startswith("**#")]
    assert f"**#{waiting}** train · second · queued behind 1 training run (one trains at a time)" in rows
    assert f"**#{register}** register · register · queued: next in line, waiting for the worker to take it" in rows
    assert not any("reading" in row for row in rows)


def test_train_page_curation_mode_trains_on_every_sample(seeded):
    _, url, _ = seeded
    at = app("train")
    normal = next(s for s in at.selectbox if s.label.startswith("Normal class"))
    normal.set_value(widgets.ALL_SAMPLES).run()
    next(b for b in at.button if b.label == "Queue training run").click().run()
    sessions = open_database(url)
    with sessions.begin() as session:
        job = session.scalars(select(Job).order_by(Job.id.desc())).first()
        data = job.config["data"]
        assert data["normal_label"] is None and data["train_split"] is None and data["holdout_fraction"] == 0


# ------------------------------------------------------------------------------------------ Runs


def test_runs_page_lists_compares_and_scores_another_dataset(seeded):
    seeded_run, url, _ = seeded
    at = app("runs")
    table = at.dataframe[0].value
    assert set(table["id"]) == {seeded_run.run_id, seeded_run.running_id}
    finished = table[table["id"] == seeded_run.run_id].iloc[0]
    assert finished["status"] == "succeeded" and finished["auroc_nnd"] > 0.9 and finished["device"] == "cpu"
    assert 0.5 <= finished["auroc_pixels"] < finished["auroc_nnd"]  # the raw-pixel reference, beside the scores
    assert at.multiselect(key="runs_compare").value == [seeded_run.running_id, seeded_run.run_id]
    assert list(at.dataframe[1].value.columns) == [f"#{seeded_run.running_id}", f"#{seeded_run.run_id}"]
    at.text_input(key="runs_score_split").set_value("test")
    next(b for b in at.button if b.label == "Queue scoring").click().run()
    assert "Queued scoring job" in texts(at.success)[0]
    sessions = open_database(url)
    with sessions.begin() as session:
        job = session.scalars(select(Job).where(Job.kind == "score")).one()
        assert job.parent_id == seeded_run.run_id and job.config["split"] == "test"


# ------------------------------------------------------------------------------------------ Explore


def test_explore_page_draws_the_projection_with_alignment_lines(seeded):
    at = app("explore")
    chart = at.get("plotly_chart")[0]
    assert "scattergl" in chart.proto.spec
    at.toggle(key="explore_lines").set_value(True).run()
    assert not at.exception
    assert '"mode":"lines"' in at.get("plotly_chart")[0].proto.spec.replace(" ", "")
    before = at.get("plotly_chart")[0].proto.spec
    at.selectbox(key="explore_color").set_value("s_nnd").run()
    coloured = at.get("plotly_chart")[0].proto.spec
    at.radio(key="explore_method").set_value("pca").run()
    assert not at.exception
    assert coloured != before and at.get("plotly_chart")[0].proto.spec != coloured  # redrawn each time
    assert any("Draw a box or a lasso" in c for c in texts(at.caption))


def test_explore_case_view_explains_why_a_sample_was_flagged(seeded):
    seeded_run, _, _ = seeded

    def case_page(run_id: int, sample_id: int) -> None:
        from dashboard import results, widgets

        widgets.case_view(results.sample_case(run_id, sample_id))

    at = AppTest.from_function(case_page, args=(seeded_run.run_id, seeded_run.scored_ids[0]), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "rank 1 of 300" in text and "training normals" in text and "Nearest training images" in text
    assert "more anomalous than" not in text  # a percentile that said 100.0 % for every flagged row
    captions = [c for image in at.image for c in [getattr(image, "caption", "")]]
    assert len(at.image) >= 3, captions  # image, context image, the neighbours


def test_the_case_view_shows_the_context_a_run_chose_and_no_wrong_image_where_none_was_recorded(seeded):
    """A run trains with `auto` and records what it became in its summary; one stored without it (unresolved)
    shows a sentence where the context image would be, not an image made with a guessed context."""
    seeded_run, url, _ = seeded

    def case_page(run_id: int, sample_id: int) -> None:
        from dashboard import results, widgets

        widgets.case_view(results.sample_case(run_id, sample_id))

    def view():
        at = AppTest.from_function(
            case_page, args=(seeded_run.run_id, seeded_run.scored_ids[0]), default_timeout=TIMEOUT
        )
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    shown = view()
    assert not any("did not record its context" in c for c in texts(shown.caption))
    sessions = open_database(url)
    with sessions.begin() as session:
        job = session.get(Job, seeded_run.run_id)
        assert job.config["train"]["context"] == "auto"  # the seeded run was queued with the default
        job.summary = {k: v for k, v in job.summary.items() if k != "context"}
    unrecorded = view()
    assert len(unrecorded.image) == len(shown.image) - 1  # the image and its neighbours, no context image
    assert any("did not record its context (auto)" in c for c in texts(unrecorded.caption))


def test_selection_event_gives_sample_ids_in_rank_order(seeded):
    from dashboard import results

    seeded_run, _, _ = seeded
    first, second, third = seeded_run.scored_ids[:3]
    event = {"selection": {"points": [{"customdata": [str(third)]}, {"customdata": [str(first)]},
                                      {"customdata": [str(third)]}, {"x": 1}]}}  # fmt: skip
    ids = results.selected_sample_ids(event)
    assert ids == [third, first]
    assert results.most_anomalous_first(seeded_run.run_id, [third, second, first]) == [first, second, third]


# ------------------------------------------------------------------------------------------ Review


def test_review_queue_records_a_verdict_at_once_and_keeps_it_after_a_reload(seeded):
    seeded_run, url, _ = seeded
    top = seeded_run.scored_ids[0]
    at = app("review")
    markdown = " ".join(m.value for m in at.markdown)
    assert "**#1**" in markdown and "training normals" in markdown and "cosine distance" in markdown
    assert "more anomalous than" not in markdown
    at.text_input(key=f"review_note_{top}").set_value("odd stroke")  # typed, then a verdict clicked
    at.button(key=f"review_verdict_{top}_anomaly").click().run()
    assert not at.exception
    sessions = open_database(url)
    with sessions.begin() as session:  # one row: the note went with the verdict, not twice
        review = session.scalars(select(Review)).one()
        assert (review.sample_id, review.verdict, review.note, review.reviewer) == (top, "anomaly", "odd stroke", "ada")
        assert review.job_id == seeded_run.run_id
    reloaded = app("review")  # a new session: what the browser sees after a reload
    assert any(c.startswith("anomaly · ada ·") for c in texts(reloaded.caption))
    assert reloaded.text_input(key=f"review_note_{top}").value == "odd stroke"
    # changing one's mind appends a row; the history keeps the first verdict
    reloaded.button(key=f"review_verdict_{top}_normal").click().run()
    with sessions.begin() as session:
        assert [r.verdict for r in session.scalars(select(Review).order_by(Review.id))] == ["anomaly", "normal"]


def test_a_note_typed_before_any_verdict_is_saved_and_kept_after_a_reload(seeded):
    from dashboard import review_list

    seeded_run, url, _ = seeded
    top = seeded_run.scored_ids[0]
    at = app("review")
    at.text_input(key=f"review_note_{top}").input("check the border").run()  # Enter, no verdict clicked
    assert not at.exception
    sessions = open_database(url)
    with sessions.begin() as session:
        review = session.scalars(select(Review)).one()
        assert (review.sample_id, review.verdict, review.note) == (top, None, "check the border")
    reloaded = app("review")
    assert reloaded.text_input(key=f"review_note_{top}").value == "check the border"
    reloaded.segmented_control(key="review_show").set_value("Unreviewed").run()  # no verdict yet
    assert f"review_note_{top}" in [t.key for t in reloaded.text_input]
    # a verdict afterwards carries the note; a later note alone keeps that verdict
    reloaded.button(key=f"review_verdict_{top}_anomaly").click().run()
    reloaded.segmented_control(key="review_show").set_value("All").run()
    reloaded.text_input(key=f"review_note_{top}").input("border and a smear").run()
    with sessions.begin() as session:
        rows = [(r.verdict, r.note) for r in session.scalars(select(Review).order_by(Review.id))]
    assert rows == [(None, "check the border"), ("anomaly", "check the border"), (None, "border and a smear")]
    csv_bytes = review_list.export_csv(seeded_run.run_id, "s_nnd", [], "Reviewed samples")
    import pandas as pd

    row = pd.read_csv(io.BytesIO(csv_bytes)).iloc[0]
    assert (row["sample_id"], row["verdict"], row["note"]) == (top, "anomaly", "border and a smear")


def test_review_filters_threshold_and_verdict_sets(seeded):
    seeded_run, _, _ = seeded
    at = app("review")
    flagged = next(m for m in at.metric if m.label == "Flagged").value
    assert flagged.endswith("of 300")
    at.radio(key="review_threshold_mode").set_value("Top count").run()
    at.number_input(key="review_threshold_count").set_value(10).run()
    assert next(m for m in at.metric if m.label == "Flagged").value == "10 of 300"
    at.segmented_control(key="review_show").set_value("Flagged").run()
    assert "**10 samples**" in " ".join(m.value for m in at.markdown)
    at.selectbox(key="review_verdicts").set_value("remove / keep / relabel").run()
    top = seeded_run.scored_ids[0]
    assert [b.label for b in at.button if b.key and b.key.startswith(f"review_verdict_{top}_")] == [
        "remove", "keep", "relabel"
    ]  # fmt: skip
    at.button(key=f"review_verdict_{top}_remove").click().run()
    at.segmented_control(key="review_show").set_value("Unreviewed").run()
    assert "**299 samples**" in " ".join(m.value for m in at.markdown)
    assert f"review_verdict_{top}_remove" not in [b.key for b in at.button]


def test_review_page_reads_a_page_of_samples_not_the_whole_run(app_data_dir):
    """Opening the queue of a large run reads each scored sample's scores once (the threshold, histogram and
    filters span them) but keys, labels and locations of the rows it shows only: reading the whole run's table
    and every sample's location took seconds at 100k samples (issue 12). Rows are counted as the database
    returns them: every SELECT the app sends is counted again on a second connection."""
    samples, reference = 3000, 500
    database = app_data_dir / "con2.db"
    seed_run(f"sqlite:///{database}", samples=samples, reference=reference, reviewed=5)
    counter = sqlite3.connect(database, check_same_thread=False)  # the script runs in its own thread
    fetched: list[tuple[str, int]] = []

    def count_rows(connection, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and not executemany:
            rows = counter.execute(f"SELECT count(*) FROM ({statement})", parameters).fetchone()[0]
            fetched.append((statement, rows))

    at = app()  # the app's first page, before the count
    event.listen(Engine, "after_cursor_execute", count_rows)
    try:
        at.switch_page("dashboard/pages/review.py").run()
    finally:
        event.remove(Engine, "after_cursor_execute", count_rows)
        counter.close()
    assert not at.exception, [e.value for e in at.exception]
    assert len([b for b in at.button if b.key and b.key.startswith("review_open_")]) == 20  # the page is there
    per_sample = sum(rows for statement, rows in fetched if re.search(r"\b(FROM|JOIN) samples\b", statement))
    assert per_sample < 200, per_sample  # a page of 20 rows, the case and its neighbours; not 3,000
    assert sum(rows for _, rows in fetched) < samples + reference + 300  # each score read once


def test_the_contact_sheet_shows_a_stretch_of_the_queue_and_moves_the_cursor_there(seeded):
    """The queue as a grid: 48 thumbnails from a chosen position, each captioned with its position, rank and
    verdict; "Move the cursor there" puts the case above on that sample and shows its page of rows."""
    seeded_run, _, _ = seeded
    top, second = seeded_run.scored_ids[:2]
    at = app("review")
    at.button(key=f"review_verdict_{second}_anomaly").click().run()
    assert not at.exception
    images_before = len(at.image)
    at.toggle(key="review_sheet").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.image) == images_before + 1  # st.image with a list of images is one element, drawn last
    captions = at.image[-1].captions
    assert len(captions) == 48 and captions[0].startswith("1 · rank #1")
    assert captions[1].startswith("2 · rank #2 · anomaly")
    assert "Queue positions 1–48 of 300" in texts(at.caption)

    at.number_input(key="review_sheet_from").set_value(97).run()
    captions = at.image[-1].captions
    assert captions[0].startswith("97 · rank #97") and len(captions) == 48
    at.number_input(key="review_sheet_target").set_value(123).run()
    at.button(key="review_sheet_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    case = next(m.value for m in at.markdown if m.value.startswith("**123 of 300**"))
    assert "rank #123" in case
    assert f"review_open_{seeded_run.scored_ids[122]}" in [b.key for b in at.button]  # its page of rows
    assert f"review_open_{top}" not in [b.key for b in at.button]


def test_export_csv_holds_verdicts_notes_reviewer_time_scores_rank_percentile_and_location(seeded):
    from dashboard import review_list, reviews

    seeded_run, _, _ = seeded
    top, second = seeded_run.scored_ids[:2]
    assert reviews.record_verdict(top, seeded_run.run_id, "anomaly", "look again", "ada").startswith("Saved")
    csv_bytes = review_list.export_csv(seeded_run.run_id, "s_nnd", [top, second], "Flagged or reviewed")
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(csv_bytes))
    assert list(frame["sample_id"]) == [top, second]
    row = frame.iloc[0]
    assert (row["rank"], row["verdict"], row["note"], row["reviewer"]) == (1, "anomaly", "look again", "ada")
    assert row["reviewed_at"].endswith("UTC") and row["location"].startswith("/data/synthetic/")
    assert 0 <= row["percentile_among_training_normals"] <= 100 and bool(row["flagged"])
    reviewed = pd.read_csv(io.BytesIO(review_list.export_csv(seeded_run.run_id, "s_nnd", [], "Reviewed samples")))
    assert list(reviewed["sample_id"]) == [top]


# ------------------------------------------------------------------------------------------ Evaluate


def test_evaluate_page_shows_auroc_roc_histograms_and_silhouette(seeded):
    at = app("evaluate")
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["AUROC S_NND"]) > 0.9 and metrics["Silhouette"] == "0.420"
    assert 0.5 <= float(metrics["AUROC raw pixels"]) < float(metrics["AUROC S_NND"])
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("S_NND (AUROC" in s for s in specs) and any("histogram" in s for s in specs)
    at.radio(key="evaluate_by").set_value("kind").run()
    assert not at.exception
    regrouped = [c.proto.spec for c in at.get("plotly_chart")]
    changed = [after for before, after in zip(specs, regrouped, strict=True) if after != before]
    assert len(changed) == 1 and '"name":"anomalous (' in changed[0]  # only the histograms, now by kind


def test_evaluate_compares_runs_of_one_normal_class_only_and_shows_every_picked_run(seeded):
    """Issue 12: two normal classes on one dataset are two groups; a comparison never mixes them, and a SimCLR
    run is labelled without the context its config carries by default."""
    seeded_run, url, _ = seeded
    simclr = seed_other_run(url, seeded_run.dataset_id, normal="0", method="simclr", seed=2)
    other_class = seed_other_run(url, seeded_run.dataset_id, normal="3", seed=3)
    at = app("evaluate")
    group = at.selectbox(key="evaluate_group")
    assert group.options == ["synthetic · normal 3 · 1 run", "synthetic · normal 0 · 2 runs"]  # newest run's first
    assert at.selectbox(key=f"evaluate_run_{seeded_run.dataset_id}|3").value == other_class
    assert "No other finished run on this dataset with this normal class" in " ".join(texts(at.caption))
    group.set_value(f"{seeded_run.dataset_id}|0").run()
    assert not at.exception
    con2, labelled = (
        f"#{seeded_run.run_id} synthetic · con2/invert · normal 0",
        f"#{simclr} synthetic · simclr · normal 0",
    )
    picker = at.selectbox(key=f"evaluate_run_{seeded_run.dataset_id}|0")
    assert sorted(picker.options) == [con2, labelled] and picker.value == simclr  # the group's newest
    compare = at.multiselect(key=f"evaluate_compare_{seeded_run.dataset_id}|0_{simclr}")
    assert compare.options == [con2] and compare.value == [seeded_run.run_id]
    names = [trace["name"] for trace in json.loads(at.get("plotly_chart")[-1].proto.spec)["data"]]
    assert len(names) == 3 and names[2] == "chance"
    assert names[0].startswith(f"{labelled} (AUROC 0.") and names[1].startswith(f"{con2} (AUROC 0.")


def test_every_page_renders_on_an_empty_database(tmp_path, monkeypatch):
    monkeypatch.setenv("CON2_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CON2_WORKER", "off")
    monkeypatch.delenv("CON2_DATABASE_URL", raising=False)
    at = app()  # the first start registers the demo dataset
    url = f"sqlite:///{tmp_path / 'con2.db'}"
    sessions = open_database(url)
    with sessions.begin() as session:
        dataset = session.scalars(select(Dataset)).one()
        assert dataset.location == "digits"
        assert session.scalars(select(Job)).one().kind == "register"
    for page in ("train", "runs", "explore", "review", "evaluate"):
        at.switch_page(f"dashboard/pages/{page}.py").run()
        assert not at.exception, page
        assert at.info, page  # each says what to do first


def test_export_of_one_verdict_for_the_curator(seeded):
    from dashboard import review_list, reviews

    seeded_run, _, _ = seeded
    first, second = seeded_run.scored_ids[:2]
    reviews.record_verdict(first, seeded_run.run_id, "remove", "blurred", "cur")
    reviews.record_verdict(second, seeded_run.run_id, "keep", None, "cur")
    import pandas as pd

    frame = pd.read_csv(
        io.BytesIO(review_list.export_csv(seeded_run.run_id, "s_lh", [], "Reviewed samples", ["remove"]))
    )
    assert list(frame["sample_id"]) == [first] and frame.iloc[0]["note"] == "blurred"
    assert frame.iloc[0]["ranked_by"] == "s_lh"


def test_an_unusable_database_url_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("CON2_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CON2_WORKER", "off")
    monkeypatch.setenv("CON2_DATABASE_URL", "mysql://nobody@nowhere/db")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "Cannot open the database: unsupported database" in at.error[0].value


def test_the_local_worker_is_checked_once_per_ttl_by_streamlits_cache(monkeypatch):
    """The sidebar's worker check is st.cache_resource with a TTL: reruns within it start nothing."""
    from dashboard import connection

    started = []
    monkeypatch.delenv(connection.WORKER_ENV, raising=False)
    monkeypatch.setattr(connection, "start_local_worker", lambda url: started.append(url))
    connection._checked_worker.clear()
    try:
        assert connection._ensure_worker("sqlite:///one.db") == "running"
        assert connection._ensure_worker("sqlite:///one.db") == "running"
        assert connection._ensure_worker("sqlite:///two.db") == "running"
        assert started == ["sqlite:///one.db", "sqlite:///two.db"]
        monkeypatch.setenv(connection.WORKER_ENV, "off")
        assert "CON2_WORKER=off" in connection._ensure_worker("sqlite:///three.db")
        assert "sqlite:///three.db" not in started
    finally:
        connection._checked_worker.clear()


def test_the_whole_queue_list_holds_every_sample_in_queue_order_with_scores_as_the_rows_word_them(seeded):
    """The third view of the queue: one table of all 300 samples, the score as a cosine distance, how many
    training normals lie below it and its reach (the rows' "× as far above their median" figure)."""
    import numpy as np

    from dashboard import queue_table

    seeded_run, _, _ = seeded
    second = seeded_run.scored_ids[1]
    at = app("review")
    at.button(key=f"review_verdict_{second}_anomaly").click().run()
    at.toggle(key="review_table").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    frame = at.dataframe[-1].value
    assert len(frame) == 300 and list(frame["#"]) == list(range(1, 301)) and list(frame["rank"]) == list(range(1, 301))
    assert list(frame["verdict"][:3]) == ["", "anomaly", ""]
    distances = frame[queue_table.SCORE_COLUMNS["s_nnd"]].to_numpy()
    assert (np.diff(distances) <= 0).all()  # most anomalous first
    # the top sample's row above the table, and the table's figures for the same sample, agree
    case = next(m.value for m in at.markdown if "**#1** " in m.value and "cosine distance" in m.value)
    assert f"cosine distance {distances[0]:.3f}" in case
    below, reach = int(frame[queue_table.BELOW][0]), float(frame[queue_table.REACH][0])
    words = re.search(r"above all ([\d,]+) training normals; ([\d.,]+) × as far", case)
    if words:  # above every normal: the count is all of them, and the reach is the rows' figure
        assert below == int(words.group(1).replace(",", "")) and f"{reach:,.1f}" == words.group(2)
    else:
        assert f"above {below:,} of" in case
