"""The data roots: the only folders whose files this server reads as datasets.

The data directory (uploads land there) and the bundled demo ('digits') always count; `CON2_DATA_ROOTS`
adds folders, separated by the platform's path separator (':' on Linux), e.g.
`CON2_DATA_ROOTS=/srv/scans:/mnt/archive`. A location is resolved first (symbolic links and '..'
followed), so a link inside a root that points out of it is outside too. The refusal reads the same
whether or not the location exists: a user must not learn about server paths outside the roots.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from db.session import data_dir

DATA_ROOTS_ENV = "CON2_DATA_ROOTS"
BUILT_IN = frozenset({"digits"})  # sources with no path: the bundled demo


class OutsideRoots(ValueError):
    """A location outside the data roots; the message never says whether it exists."""


def data_roots() -> list[Path]:
    """The data directory and every folder CON2_DATA_ROOTS names, each resolved."""
    extra = [part.strip() for part in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if part.strip()]
    return [Path(os.path.realpath(Path(p).expanduser())) for p in [str(data_dir()), *extra]]


def refusal(location: str) -> str:
    """The one sentence for any location outside the roots, existing or not."""
    return (
        f"{location} is not inside a folder this server may read datasets from; "
        f"ask whoever runs it to add its folder to {DATA_ROOTS_ENV}"
    )


def resolve_within_roots(location: str, *, roots: Iterable[Path] | None = None) -> str:
    """The resolved absolute path of `location` (or the built-in name itself) when it lies inside a data
    root; raises OutsideRoots otherwise, including for a relative path (it would depend on the cwd)."""
    if location in BUILT_IN:
        return location
    path = Path(location).expanduser()
    if not path.is_absolute():
        raise OutsideRoots(refusal(location))
    resolved = Path(os.path.realpath(path))  # follows every symbolic link and '..', existing or not
    if not any(resolved.is_relative_to(root) for root in (data_roots() if roots is None else roots)):
        raise OutsideRoots(refusal(location))
    return str(resolved)
