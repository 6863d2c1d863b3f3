"""Resumable training checkpoints behind a two-method store, so the loop never knows where they live.

A checkpoint holds the model, optimiser and scheduler state, the epoch it completes, the metrics so
far and a key of the config and data it was made with, so an interrupted run continues from its
last completed epoch and a mismatched one is refused instead of silently mixed. `DirectoryCheckpoints`
keeps one file per run directory; the worker passes a store backed by the database instead, so
another machine can resume the run.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Protocol

import torch

LAST = "last.pt"


class CheckpointStore(Protocol):
    """Where a run's latest checkpoint is kept."""

    def load(self) -> dict[str, Any] | None:
        """The latest checkpoint, or None when the run has none yet."""

    def save(self, state: dict[str, Any]) -> None:
        """Replace the latest checkpoint, atomically."""


class DirectoryCheckpoints:
    """One `last.pt` in a directory, replaced atomically (a crash mid-write keeps the previous one)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def load(self) -> dict[str, Any] | None:
        path = self.directory / LAST
        if not path.exists():
            return None
        return torch.load(path, map_location="cpu", weights_only=False)

    def save(self, state: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / (LAST + ".partial")
        torch.save(state, partial)
        os.replace(partial, self.directory / LAST)


def to_bytes(state: dict[str, Any]) -> bytes:
    """Serialise a checkpoint (or any torch state) for stores that keep bytes, e.g. a database."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def from_bytes(blob: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
