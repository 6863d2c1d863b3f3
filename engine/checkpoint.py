"""Resumable training checkpoints behind a two-method store, so the loop never knows where they live.

A checkpoint holds the model, optimiser and scheduler state, the epoch it completes, the metrics so
far and a key of the config and data it was made with, so an interrupted run continues from its
last completed epoch and a mismatched one is refused instead of silently mixed. `DirectoryCheckpoints`
keeps one file per run directory; the worker passes a store backed by the database instead, so
another machine can resume the run.

Every load is `torch.load(..., weights_only=True)`: a file may hold tensors, dicts, lists, tuples,
numbers, strings and None, nothing that runs code when unpickled. A crafted file (a pickle whose
`__reduce__` calls os.system) is refused with a `CheckpointError` before anything in it runs; so is
a truncated or corrupt one. What we save is only of those types.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any, Protocol

import torch

from engine.data import DataError

LAST = "last.pt"


class CheckpointError(DataError):
    """A model or checkpoint file that cannot be loaded, or must not be: the message names it and says why."""


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
        try:
            blob = path.read_bytes()
        except OSError as error:
            raise CheckpointError(f"cannot read the checkpoint {path}: {error.strerror or error}") from None
        return from_bytes(blob, what=f"the checkpoint {path}")

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


def from_bytes(blob: bytes, what: str = "the saved model") -> dict[str, Any]:
    """The state `to_bytes` wrote. Raises `CheckpointError` naming `what` for a file that holds code
    (refused unread) or is not a torch save at all (truncated, corrupt, some other file)."""
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        named = re.search(r"GLOBAL (\S+)", str(error))  # torch names the first callable or class it refused
        if named:
            raise CheckpointError(
                f"refused to load {what}: besides tensors and numbers it names Python code ({named.group(1)}), "
                "which could run on loading; con2 never writes that, so the file may be malicious"
            ) from None
        raise CheckpointError(f"{what} is corrupt or not a con2 file (its contents cannot be unpickled)") from None
    except Exception as error:  # random bytes reach the safe unpickler as IndexError, KeyError, struct.error...
        raise CheckpointError(f"{what} is corrupt or not a con2 file ({_first_line(error)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} is not a con2 file: it holds a {type(state).__name__}, not a dict")
    return state


def _first_line(error: Exception) -> str:
    """The first sentence of a loader's message (torch's run to a paragraph)."""
    if isinstance(error, EOFError):
        return "it ends early"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.split(". ", 1)[0].rstrip(".")
