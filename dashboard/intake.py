"""Bringing a dataset in from the browser: checking a typed location, storing uploads safely.

Uploads (images, or one .zip of an image folder) are written only below `<data dir>/uploads/<id>/`,
after every check has passed: a size limit on what was sent and on what a zip expands to, and no zip
member may leave its folder (`..`, an absolute path, a drive letter or a symbolic link). A rejected
upload writes nothing. Every problem is an `IntakeError` whose message a user can act on.
"""

from __future__ import annotations

import os
import shutil
import uuid
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from db.roots import DATA_ROOTS_ENV, OutsideRoots, resolve_within_roots
from engine.archives import (
    IMAGE_EXTENSIONS,
    ExpansionLimits,
    ZipImages,
    expansion_problem,
    is_image_name,
    unsafe_member,
    zip_images,
)

UPLOAD_LIMIT_ENV = "CON2_MAX_UPLOAD_MB"
DEFAULT_UPLOAD_LIMIT_MB = 500
EXPANSION_LIMIT = 4  # a zip may expand to at most this many times the upload limit (zip bombs)
UPLOADS = "uploads"


class IntakeError(ValueError):
    """A location or upload that cannot become a dataset; the message says why and what to do."""


@dataclass(frozen=True)
class LocationCheck:
    """What a typed location holds, checked before anything is registered."""

    spec: str  # what to register: an absolute path, or "digits"
    kind: str  # folder, zip, csv, npz, digits
    images: int  # entries the source lists
    missing: list[str]  # CSV rows whose file does not exist (at most a few shown by the page)
    missing_count: int


def upload_limit_bytes() -> int:
    """The upload size limit: `CON2_MAX_UPLOAD_MB` megabytes (default 500)."""
    raw = os.environ.get(UPLOAD_LIMIT_ENV, "")
    try:
        megabytes = float(raw) if raw.strip() else DEFAULT_UPLOAD_LIMIT_MB
    except ValueError:
        megabytes = DEFAULT_UPLOAD_LIMIT_MB
    return int(megabytes * 1024 * 1024)


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def check_location(location: str) -> LocationCheck:
    """Check a typed folder, .zip, .csv or .npz path (or 'digits') before registering it.

    Raises IntakeError for a path outside the data roots (`db.roots`; one sentence whether it exists or
    not), a CSV naming files outside them, an empty entry, a path that does not exist, an unsupported file, a source
    without images, or a CSV none of whose files exist. A CSV with only some files missing passes,
    with them counted in `missing` (they are then listed as unreadable).
    """
    from engine.data import DataError  # imported here: torch loads with the engine's data layer
    from engine.sources import CsvSource, open_source

    spec = location.strip().strip('"').strip("'")
    if not spec:
        raise IntakeError("Enter the path of a folder, a .zip, a .csv manifest or a .npz file (or 'digits').")
    if spec != "digits":
        path = Path(spec).expanduser()
        if not path.is_absolute():
            raise IntakeError(f"'{spec}' is not an absolute path; enter the full path, e.g. /data/scans/2024.")
        try:  # before anything looks at the path: outside the roots, missing and existing read the same
            resolved = resolve_within_roots(str(path))
        except OutsideRoots as error:
            raise IntakeError(f"{error}.") from None
        if not path.exists():
            raise IntakeError(f"Nothing exists at {path}. Check the spelling, and that this machine can see the drive.")
        spec = resolved
    try:
        source = open_source(spec)
    except DataError as error:
        raise IntakeError(f"Cannot use {spec}: {error}") from None
    try:
        refs = source.refs()
        missing = []
        if isinstance(source, CsvSource):
            outside = _outside_roots(ref.location for ref in refs)
            if outside:  # checked before any row's file is looked at, for the same reason
                raise IntakeError(
                    f"The manifest {Path(spec).name} names {len(outside)} file(s) outside the folders this server "
                    f"may read datasets from (e.g. {outside[0]}); nothing was registered. "
                    f"Ask whoever runs it to add their folder to {DATA_ROOTS_ENV}."
                )
            missing = [ref.location for ref in refs if not Path(ref.location).is_file()]
            if len(missing) == len(refs):
                raise IntakeError(
                    f"None of the {len(refs)} files the manifest {Path(spec).name} names exist (e.g. {missing[0]}). "
                    "Relative paths are read from the CSV's own folder."
                )
        return LocationCheck(spec, source.kind, len(refs), missing[:10], len(missing))
    finally:
        source.close()


def _outside_roots(locations: Iterable[str]) -> list[str]:
    """The locations (as written) that lie outside the data roots."""
    outside = []
    for location in locations:
        try:
            resolve_within_roots(location)
        except OutsideRoots:
            outside.append(location)
    return outside


def _safe_name(name: str) -> str:
    """The file name of an uploaded file, without any folder part; IntakeError when nothing usable is left."""
    base = PurePosixPath(name.replace("\\", "/")).name
    if base in ("", ".", "..") or base.startswith("."):
        raise IntakeError(f"Cannot store an uploaded file named {name!r}.")
    return base


def _check_zip(data: Path, limit: int) -> ZipImages:
    """The image members of a zip as a dataset lists them (`engine.archives.zip_images`: no folders, hidden
    files or macOS resource forks), after refusing unsafe names (of any member) and oversized expansion."""
    try:
        with zipfile.ZipFile(data) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise IntakeError(f"The upload is not a readable zip: {error}") from None
    for info in infos:
        problem = unsafe_member(info)
        if problem:
            raise IntakeError(
                f"The zip holds {problem} ({info.filename!r}), which could write outside its folder; "
                "nothing was stored. Re-create the zip from inside the dataset's folder."
            )
    images = zip_images(infos)  # nothing unsafe is left: it refuses only a second member under one path
    expansion = expansion_problem(infos, ExpansionLimits(max_total_bytes=EXPANSION_LIMIT * limit))
    if expansion:
        raise IntakeError(f"The zip {expansion}; register its folder by path instead.")
    if not images.members:
        raise IntakeError(f"The zip holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}).")
    return images


def store_upload(files: Sequence[tuple[str, bytes]], data_dir: Path, *, limit_bytes: int | None = None) -> Path:
    """Store uploaded files as a new folder `<data_dir>/uploads/<id>/` and return it (ready to register).

    `files`: (name as the browser sent it, content). Either image files, or exactly one .zip (extracted
    there, member paths kept, each checked to stay inside). Raises IntakeError, having written nothing,
    for no files, an upload over the limit, a non-image file, or an unsafe or oversized zip.
    """
    limit = upload_limit_bytes() if limit_bytes is None else limit_bytes
    if not files:
        raise IntakeError("Choose image files or one .zip to upload.")
    total = sum(len(content) for _, content in files)
    if total > limit:
        raise IntakeError(
            f"The upload is {_megabytes(total)}, over the {_megabytes(limit)} limit "
            f"(set {UPLOAD_LIMIT_ENV} to change it); for larger datasets enter the folder's path instead."
        )
    names = [_safe_name(name) for name, _ in files]
    zips = [n for n in names if n.lower().endswith(".zip")]
    if zips and len(files) > 1:
        raise IntakeError("Upload either one .zip or image files, not both.")
    if not zips:
        bad = [n for n in names if not is_image_name(n)]
        if bad:
            raise IntakeError(f"Not an image or a zip: {', '.join(bad[:5])}.")
        if len(set(names)) != len(names):
            raise IntakeError("Two uploaded files have the same name; rename one and upload again.")

    root = (Path(data_dir) / UPLOADS).resolve()
    target = root / uuid.uuid4().hex[:12]
    staging = root / f".incoming-{target.name}"
    staging.mkdir(parents=True, exist_ok=False)
    wrapper = ""  # a lone top folder of a zip's images, looked through as the engine does reading a zip
    try:
        if zips:
            archive_path = staging / names[0]
            archive_path.write_bytes(files[0][1])
            images = _check_zip(archive_path, limit)
            wrapper = images.prefix
            with zipfile.ZipFile(archive_path) as archive:
                for name, info in images.members.items():
                    destination = (staging / "files" / name).resolve()
                    if not destination.is_relative_to(staging / "files"):  # belt and braces after _check_zip
                        raise IntakeError(f"Zip member {info.filename!r} would leave its folder; nothing was stored.")
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as source, open(destination, "wb") as sink:
                        shutil.copyfileobj(source, sink)
            archive_path.unlink()
        else:
            (staging / "files").mkdir()
            for name, (_, content) in zip(names, files, strict=True):
                destination = (staging / "files" / name).resolve()
                if not destination.is_relative_to(staging / "files"):
                    raise IntakeError(f"Cannot store an uploaded file named {name!r}.")
                destination.write_bytes(content)
        (staging / "files").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / wrapper if wrapper else target
