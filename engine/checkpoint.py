"""Resumable training checkpoints: one file per run directory, replaced atomically.

A checkpoint holds the model, optimiser and scheduler state, the epoch it completes, the metrics so
far and the config it was made with, so an interrupted run continues from its last completed epoch
and a mismatched config is refused instead of silently mixed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

LAST = "last.pt"
MODEL = "model.pt"


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` to directory/last.pt atomically (a crash mid-write leaves the previous one)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / LAST
    partial = directory / (LAST + ".partial")
    torch.save(state, partial)
    os.replace(partial, target)
    return target


def load_checkpoint(directory: str | Path | None) -> dict[str, Any] | None:
    """The last checkpoint in `directory`, or None when there is none."""
    if directory is None:
        return None
    path = Path(directory) / LAST
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
