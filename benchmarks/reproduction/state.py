"""The state directory: one folder per budget, in it one folder per cell.

A finished cell holds `result.json`, the measurement. An unfinished one holds its training checkpoint
(`last.pt`, engine.checkpoint.DirectoryCheckpoints', deleted once the cell is finished) and
`sessions.json`: the settings it was started with and the time each session spent. Files are replaced
atomically, so a crash keeps the previous one.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from benchmarks.reproduction.protocol import comparable

RESULT = "result.json"
SESSIONS = "sessions.json"


class StateMismatch(Exception):
    """The state directory holds this cell made with other settings."""


def write_json(path: Path, value: Any) -> None:
    """Replace `path` atomically: a crash mid-write keeps the previous file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def now() -> str:
    """UTC, to the second, ISO 8601."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def check_same(cell_id: str, record: dict[str, Any], wanted: dict[str, Any], what: str) -> None:
    """Raise StateMismatch when `record` (a stored result or sessions file) was made with other settings."""
    floor = set(wanted) == {"data"}
    if comparable(record["config"], floor) != wanted:
        raise StateMismatch(f"{cell_id}: {what} was made with other settings ({describe_difference(record, wanted)})")


def describe_difference(record: dict[str, Any], wanted: dict[str, Any]) -> str:
    """'train.epochs: 60 there, 3 now' for every setting that differs."""
    stored = comparable(record["config"], set(wanted) == {"data"})
    changes = [
        f"{section}.{key}: {stored[section].get(key)!r} there, {value!r} now"
        for section in wanted
        for key, value in wanted[section].items()
        if stored.get(section, {}).get(key) != value
    ]
    return "; ".join(changes) or "different settings"


def load_results(state_root: Path) -> dict[str, list[dict[str, Any]]]:
    """Every finished cell under the state root, by budget."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(state_root.glob(f"*/*/{RESULT}")):
        result = json.loads(path.read_text())
        out.setdefault(result["budget"], []).append(result)
    return out
