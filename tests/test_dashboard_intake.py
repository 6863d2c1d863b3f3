"""Bad input at the door: missing folders, unsafe zips, oversized uploads, manifests naming missing files.

Each gives a clear message, and nothing is written outside the data directory (or at all, when rejected).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from dashboard.intake import IntakeError, check_location, store_upload, upload_limit_bytes
from engine.sources import ZipSource


def png(value: int = 128, side: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side), value).save(buffer, format="PNG")
    return buffer.getvalue()


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(IntakeError, match="Nothing exists at .*nope"):
        check_location(str(tmp_path / "nope"))
    with pytest.raises(IntakeError, match="absolute path"):
        check_location("relative/folder")
    with pytest.raises(IntakeError, match="Enter the path"):
        check_location("   ")


def test_folder_without_images_and_unsupported_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IntakeError, match="no images"):
        check_location(str(tmp_path / "empty"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(IntakeError, match="unsupported"):
        check_location(str(tmp_path / "notes.txt"))


def test_csv_naming_only_missing_files_is_refused(tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\nimg/a.png,0\nimg/b.png,1\n")
    with pytest.raises(IntakeError, match="None of the 2 files"):
        check_location(str(manifest))


def test_csv_naming_some_missing_files_passes_with_them_counted(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png())
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\nimg/a.png,0\nimg/b.png,1\n")
    check = check_location(str(manifest))
    assert check.kind == "csv" and check.images == 2 and check.missing_count == 1
    assert check.missing[0].endswith("b.png")


def test_folder_check(tmp_path):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "a.png").write_bytes(png())
    check = check_location(str(tmp_path))
    assert check.kind == "folder" and check.images == 1 and check.spec == str(tmp_path.resolve())
    assert check_location("digits").kind == "digits"


def test_images_are_stored_under_the_data_dir(tmp_path):
    data_dir = tmp_path / "data"
    folder = store_upload([("a.png", png()), ("../../b.png", png(3))], data_dir)
    assert folder.is_relative_to((data_dir / "uploads").resolve())
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png"]  # folder parts of names dropped
    assert all(p == "data" or p.startswith("data/uploads") for p in files_under(tmp_path))


@pytest.mark.parametrize("evil", ["../evil.png", "a/../../evil.png", "/tmp/evil.png", "C:/evil.png"])
def test_zip_slip_is_refused_and_nothing_is_written(tmp_path, evil):
    data_dir = tmp_path / "data"
    content = zipped({"good/0/a.png": png(), evil: png()})
    with pytest.raises(IntakeError, match="could write outside its folder"):
        store_upload([("set.zip", content)], data_dir)
    assert not (tmp_path / "evil.png").exists()
    assert files_under(data_dir / "uploads") == set()  # the staging folder is gone too


def test_zip_symlink_member_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("0/a.png", png())
        link = zipfile.ZipInfo("0/link.png")
        link.external_attr = 0o120777 << 16  # a symbolic link
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(IntakeError, match="symbolic link"):
        store_upload([("set.zip", buffer.getvalue())], tmp_path)


def test_zip_is_extracted_and_a_wrapping_folder_looked_through(tmp_path):
    content = zipped({"scans/normal/a.png": png(), "scans/odd/b.png": png(9), "scans/readme.txt": b"x"})
    folder = store_upload([("scans.zip", content)], tmp_path)
    assert folder.name == "scans"
    assert files_under(folder) == {"normal", "normal/a.png", "odd", "odd/b.png"}


def test_an_upload_keeps_the_images_a_zip_source_would_list(tmp_path):
    """One rule for both ways in (engine.archives): hidden files and macOS resource forks are not images,
    and the wrapping folder is looked through even with a resource fork beside it."""
    members = {
        "scans/normal/a.png": png(),
        "scans/odd/b.png": png(9),
        "scans/odd/.hidden.png": png(),
        "__MACOSX/scans/normal/._a.png": b"resource fork",
        "__MACOSX/scans/normal/a.png": b"resource fork",
    }
    folder = store_upload([("scans.zip", zipped(members))], tmp_path)
    assert folder.name == "scans"
    assert files_under(folder.parent) == {"scans", "scans/normal", "scans/normal/a.png", "scans/odd", "scans/odd/b.png"}
    archive = tmp_path / "scans.zip"
    archive.write_bytes(zipped(members))
    listed = ZipSource(archive)
    assert sorted(ref.sample_id for ref in listed.refs()) == sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*.png")
    )
    listed.close()


def test_oversized_upload_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(IntakeError, match="over the 0.0 MB limit"):
        store_upload([("a.png", png())], tmp_path, limit_bytes=10)
    assert files_under(tmp_path) == set()


def test_zip_bomb_expansion_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("0/big.png", b"\0" * 1_000_000)
    with pytest.raises(IntakeError, match="expands to"):
        store_upload([("bomb.zip", buffer.getvalue())], tmp_path, limit_bytes=100_000)


def test_other_rejections(tmp_path):
    with pytest.raises(IntakeError, match="Choose"):
        store_upload([], tmp_path)
    with pytest.raises(IntakeError, match="Not an image"):
        store_upload([("notes.txt", b"hi")], tmp_path)
    with pytest.raises(IntakeError, match="one .zip or image files"):
        store_upload([("a.zip", zipped({"a.png": png()})), ("b.png", png())], tmp_path)
    with pytest.raises(IntakeError, match="not a readable zip"):
        store_upload([("a.zip", b"not a zip")], tmp_path)
    assert files_under(tmp_path / "uploads") == set()


def test_upload_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("CON2_MAX_UPLOAD_MB", "2")
    assert upload_limit_bytes() == 2 * 1024 * 1024
    monkeypatch.setenv("CON2_MAX_UPLOAD_MB", "lots")
    assert upload_limit_bytes() == 500 * 1024 * 1024
