"""Data roots: registration by path, in the dashboard and in the worker, reads only inside the configured
folders, and its refusal does not tell a user whether a path outside them exists."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from dashboard.intake import IntakeError, check_location
from db import datasets, job_reads, job_submit
from db.session import open_database
from worker.loop import run_worker


def png(value: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), value).save(buffer, format="PNG")
    return buffer.getvalue()


def image_folder(path):
    (path / "0").mkdir(parents=True)
    for i in range(3):
        (path / "0" / f"{i}.png").write_bytes(png(40 * i))
    return path


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """One configured root and a data directory; `outside` holds a real image folder in neither."""
    monkeypatch.setenv("CON2_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CON2_DATA_ROOTS", str(tmp_path / "scans"))
    inside = image_folder(tmp_path / "scans" / "2024")
    outside = image_folder(tmp_path / "private")
    return tmp_path, inside, outside


def refusal(location: str) -> str:
    with pytest.raises(IntakeError) as caught:
        check_location(location)
    return str(caught.value)


def test_a_folder_inside_a_root_or_the_data_dir_registers(roots):
    tmp_path, inside, _ = roots
    assert check_location(str(inside)).images == 3
    uploads = image_folder(tmp_path / "data" / "uploads" / "abc")
    assert check_location(str(uploads)).images == 3
    assert check_location("digits").kind == "digits"  # the bundled demo


def test_outside_the_roots_existing_and_missing_read_the_same(roots):
    tmp_path, _, outside = roots
    existing = refusal(str(outside))
    missing = refusal(str(tmp_path / "no-such-folder"))
    assert "not inside a folder this server may read" in existing and "CON2_DATA_ROOTS" in existing
    assert existing.replace(str(outside), "<path>") == missing.replace(str(tmp_path / "no-such-folder"), "<path>")
    assert "not inside" in refusal("/") and "not inside" in refusal("/etc/passwd")  # the examples


def test_links_and_dot_dots_are_resolved_before_the_check(roots):
    tmp_path, inside, outside = roots
    link = tmp_path / "scans" / "shortcut"
    os.symlink(outside, link)  # a link inside the root that points out of it
    assert "not inside" in refusal(str(link))
    assert "not inside" in refusal(str(tmp_path / "scans" / ".." / "private"))
    assert check_location(str(tmp_path / "scans" / "2024" / ".." / "2024")).spec == str(inside.resolve())


def test_a_manifest_inside_may_not_name_files_outside(roots):
    tmp_path, inside, outside = roots
    manifest = tmp_path / "scans" / "list.csv"
    manifest.write_text(f"path,label\n{inside / '0' / '0.png'},0\n{outside / '0' / '1.png'},1\n")
    existing = refusal(str(manifest))
    manifest.write_text(f"path,label\n{inside / '0' / '0.png'},0\n{outside / '0' / 'gone.png'},1\n")
    missing = refusal(str(manifest))
    assert "outside the folders this server may read" in existing and "nothing was registered" in existing
    assert existing.replace("1.png", "X") == missing.replace("gone.png", "X")  # nothing about whether it exists


@pytest.mark.parametrize("what", ["folder", "manifest row"])
def test_the_worker_refuses_a_dataset_outside_its_roots(roots, what):
    tmp_path, inside, outside = roots
    url = f"sqlite:///{tmp_path / 'data' / 'con2.db'}"
    sessions = open_database(url)
    location = str(outside)
    if what == "manifest row":
        location = str(tmp_path / "scans" / "list.csv")
        (tmp_path / "scans" / "list.csv").write_text(f"path,label\n{outside / '0' / '1.png'},0\n")
    with sessions.begin() as session:  # a row another app (or an older version) wrote: no check on the way in
        dataset = datasets.create_dataset(session=session, location=location)
        job = job_submit.submit_register(session=session, dataset_id=dataset.id)
    assert run_worker(url, once=True) == 1
    with sessions() as session:
        finished = job_reads.get_job(session=session, job_id=job.id)
        samples = datasets.read_samples(session=session, dataset_id=dataset.id)
    sessions.kw["bind"].dispose()
    assert finished.status == "failed" and "not inside a folder this server may read" in finished.error
    assert len(samples["id"]) == 0  # nothing outside the roots was listed
