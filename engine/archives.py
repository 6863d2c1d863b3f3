"""The rules every zip must pass before any member is read, and which files a dataset lists: the one owner.

What counts as an image file (`IMAGE_EXTENSIONS`, `is_image_name`), which folder names are splits
(`SPLIT_NAMES`), which zip members a dataset lists (`image_member`, and all of them at once with the
members it refuses, `zip_images`) and when a lone top folder is looked through (`wrapping_folder`) are
defined here once: the engine's sources read by them and the dashboard's upload checks apply the same rules
(this module imports nothing heavy).

A dataset .zip, an .npz (numpy's zip of arrays) and a browser upload are all zips. Each is checked from
its central directory, the index at the end of the file, so a zip bomb is refused before a byte of it
is decompressed:

- a member name must stay inside the archive's folder: no absolute path, drive letter, `..` part or
  symbolic link (`unsafe_member`);
- the archive must not expand too far (`expansion_problem`): a member count, a size per member and in
  total, and a compression ratio for large members and for the whole archive. Real images are already
  compressed (PNG, JPEG: about 1:1) or compress modestly (BMP, TIFF scans with black borders: tens);
  a bomb is hundreds to thousands.

The declared sizes bind: Python's zipfile stops a member at its declared size and fails its CRC if the
data goes on, so a member whose directory entry lies cannot expand past what was checked here.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

GIB = 1 << 30
MIB = 1 << 20
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
SPLIT_NAMES = frozenset({"train", "val", "valid", "validation", "test"})
RESOURCE_FORKS = "__MACOSX"  # the folder macOS's zip tool adds: resource forks, never images


@dataclass(frozen=True)
class ExpansionLimits:
    """How far a zip may expand; sizes in bytes of uncompressed data."""

    max_members: int = 1_000_000
    max_member_bytes: int = 1 * GIB  # a 100 Mpx 16-bit RGBA image, the largest `max_pixels` admits, is 0.8 GiB
    max_total_bytes: int = 32 * GIB
    max_ratio: float = 200.0  # uncompressed / compressed
    ratio_from_bytes: int = 16 * MIB  # smaller members may compress any amount: they cannot hurt


DEFAULT_LIMITS = ExpansionLimits()


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a member could land outside the archive's folder ("a '..' path"), or None when it is safe."""
    name = info.filename.replace("\\", "/")  # some Windows tools write backslashes
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in name.split("/"):
        return "a '..' path"
    if stat.S_ISLNK(info.external_attr >> 16):  # Unix mode bits live in the high 16 bits
        return "a symbolic link"
    return None


def is_image_name(name: str) -> bool:
    """True for a file name with an image extension (any case) that is not hidden."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def image_member(info: zipfile.ZipInfo) -> str | None:
    """The '/'-separated path ('no/1.png') under which a dataset lists this member, or None for one it
    never lists: a folder, a file that is not an image, a hidden file or folder, macOS's resource forks.

    The path drops empty and '.' parts and turns backslashes into slashes; it keeps any '..' part, so an
    unsafe member is still seen (check `unsafe_member` too).
    """
    parts = [part for part in info.filename.replace("\\", "/").split("/") if part not in ("", ".")]
    if info.is_dir() or not parts or not is_image_name(parts[-1]):
        return None
    if any(part.startswith(".") and part != ".." for part in parts) or parts[0] == RESOURCE_FORKS:
        return None
    return "/".join(parts)


def wrapping_folder(names: Sequence[str]) -> str:
    """'dataset/' when every image (a '/'-separated path) sits below one folder that is not a split name,
    and deeper than its direct children (zipping a folder adds it); else ''."""
    first = {name.split("/", 1)[0] for name in names}
    if len(first) != 1 or next(iter(first)).lower() in SPLIT_NAMES:
        return ""
    if all(name.count("/") >= 2 for name in names):
        return next(iter(first)) + "/"
    return ""


@dataclass(frozen=True)
class ZipImages:
    """The images a dataset lists from a zip's members (`zip_images`)."""

    members: dict[str, zipfile.ZipInfo]  # by the path a dataset lists (`image_member`); the first of each path
    refused: list[tuple[zipfile.ZipInfo, str]]  # image members never listed, with why ("zip member with ...")
    prefix: str  # the wrapping folder the paths are read through (`wrapping_folder`); '' for none


def zip_images(infos: Sequence[zipfile.ZipInfo]) -> ZipImages:
    """The image members a dataset lists, in the zip's order: an unsafe one (`unsafe_member`) and a second
    member under a path already listed are refused, with the reason; other files are passed over."""
    members: dict[str, zipfile.ZipInfo] = {}
    refused: list[tuple[zipfile.ZipInfo, str]] = []
    for info in infos:
        name = image_member(info)
        if name is None:
            continue  # folders, other files, hidden files and macOS resource forks
        problem = unsafe_member(info)
        if problem or name in members:
            refused.append((info, f"zip member with {problem}" if problem else "duplicate member name in zip"))
            continue
        members[name] = info
    return ZipImages(members, refused, wrapping_folder(list(members)))


def expansion_problem(infos: Sequence[zipfile.ZipInfo], limits: ExpansionLimits = DEFAULT_LIMITS) -> str | None:
    """Why these members expand too far, as a phrase after "the zip" ("expands to 2.5 GB ..."), or None."""
    if len(infos) > limits.max_members:
        return f"holds {len(infos):,} members, more than the {limits.max_members:,} allowed"
    for info in infos:
        if info.file_size > limits.max_member_bytes:
            return (
                f"expands to {size(info.file_size)} in one member ({info.filename!r}), "
                f"more than the {size(limits.max_member_bytes)} a member may hold"
            )
        if info.file_size > limits.ratio_from_bytes and info.file_size > limits.max_ratio * info.compress_size:
            return (
                f"expands to {size(info.file_size)} from {size(info.compress_size)} in one member "
                f"({info.filename!r}), a ratio over the {limits.max_ratio:g}:1 real images reach"
            )
    total = sum(info.file_size for info in infos)
    packed = sum(info.compress_size for info in infos)
    if total > limits.max_total_bytes:
        return f"expands to {size(total)}, more than the {size(limits.max_total_bytes)} allowed"
    if total > limits.ratio_from_bytes and total > limits.max_ratio * packed:
        return (
            f"expands to {size(total)} from {size(packed)}, a ratio over the {limits.max_ratio:g}:1 real images reach"
        )
    return None


def size(count: int) -> str:
    """Bytes in the unit a user reads at a glance: '512 B', '3.2 MB', '2.5 GB' (powers of 1024)."""
    for unit, scale in (("GB", GIB), ("MB", MIB), ("kB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"
