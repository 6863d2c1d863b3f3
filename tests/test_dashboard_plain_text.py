"""User text (notes, file names, labels, verdicts, dataset names) reaches the browser as text: never as a Markdown
link or image, never as HTML. Checked on what the pages send (AppTest); the browser side (no request for a
note's image link) is in test_review_e2e.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard.seed import seed_run

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
TIMEOUT = 90
BAIT = "![x](http://127.0.0.1:9/bait.png) <img src='http://127.0.0.1:9/tag.png'> **bold**"
# Markdown that would fetch or link, or raw HTML, in a body Streamlit renders as Markdown
ACTIVE = re.compile(r"!\[x\]\(|(?<!\\)<img|\*\*bold")


@pytest.fixture
def seeded(app_data_dir):
    data_dir = app_data_dir
    return seed_run(f"sqlite:///{data_dir / 'con2.db'}", samples=40)


def markdown_bodies(at: AppTest) -> list[str]:
    """Every body the page sends that the browser renders as Markdown."""
    kinds = ("markdown", "caption", "success", "error", "warning", "info", "toast")
    bodies = [str(e.value) for kind in kinds for e in getattr(at, kind)]
    return bodies + [b.label for b in at.button]


def test_a_note_with_an_image_link_and_html_stays_text_on_the_review_page_and_in_the_case_view(seeded):
    from dashboard import reviews

    top = seeded.scored_ids[0]
    assert reviews.record_verdict(top, seeded.run_id, BAIT, BAIT, BAIT).startswith("Saved")  # verdict, note, name
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("dashboard/pages/review.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_input(key=f"review_note_{top}").value == BAIT  # the note field holds it as typed
    shown = markdown_bodies(at)
    assert not [b for b in shown if ACTIVE.search(b)], [b for b in shown if ACTIVE.search(b)]
    assert any("\\!\\[x\\]\\(http" in b for b in shown)  # the verdict and reviewer are there, escaped

    def case_page(run_id: int, sample_id: int) -> None:
        from dashboard import results, widgets

        widgets.case_view(results.sample_case(run_id, sample_id))

    case = AppTest.from_function(case_page, args=(seeded.run_id, top), default_timeout=TIMEOUT).run()
    assert not case.exception
    assert f"Note: {BAIT}" in [t.value for t in case.text]  # st.text: neither Markdown nor HTML
    shown = markdown_bodies(case)
    assert not [b for b in shown if ACTIVE.search(b)], [b for b in shown if ACTIVE.search(b)]


def test_a_dataset_name_and_a_folder_name_with_markdown_stay_text_on_the_data_page(seeded, tmp_path):
    folder = tmp_path / "scans [x](y)"
    folder.mkdir()
    Image.new("L", (8, 8), 90).save(folder / "a.png")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.text_input(key="data_location").set_value(str(folder))
    at.text_input(key="data_path_name").set_value(BAIT)
    at.button(key="FormSubmitter:data_register_path-Register").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Registered" in at.success[0].value
    shown = markdown_bodies(at)
    assert not [b for b in shown if ACTIVE.search(b)], [b for b in shown if ACTIVE.search(b)]
    assert any("\\<img src=" in b for b in shown)  # the name is shown, as text


def test_a_database_error_on_a_page_is_one_sentence_in_the_browser_and_details_in_the_log(tmp_path, caplog):
    def page(path: str) -> None:
        from dashboard import widgets
        from db.session import make_engine

        with widgets.database_errors("list the datasets"):
            with make_engine(f"sqlite:///{path}").connect():  # a folder, not a database file
                pass
        widgets.st.write("not reached")

    (tmp_path / "db-folder").mkdir()
    at = AppTest.from_function(page, args=(str(tmp_path / "db-folder"),), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "The database could not list the datasets just now. Reload the page in a moment."
    ]
    assert not at.markdown  # the page stopped there
    assert "points at a folder" in caplog.text and str(tmp_path) in caplog.text  # the details: in the log only
