"""Values for display: a metric to three digits, a UTC time to the minute, a duration in words."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from engine.config import CLASSICAL_METHODS, ROTATION_METHODS

# methods whose config's context is a default, not a setting (the rotation methods shift by rotation instead)
CONTEXT_FREE = ("simclr", *ROTATION_METHODS, *CLASSICAL_METHODS)


def number(value: Any, digits: int = 3) -> str:
    """A metric for display: '0.987', or '–' when missing."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def method_label(method: str | None, context: str | None) -> str:
    """A run's method as its labels say it: "con2/invert", but "simclr", the rotation methods ("csi",
    "self_oecl", "firm", "masked_contrastive") and the classical references alone (no context trained)."""
    if not method:
        return ""
    if method in CONTEXT_FREE or not context:
        return str(method)
    return f"{method}/{context}"


def when(value: Any) -> str:
    """A UTC time for display, to the minute."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return ""
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# What a lane's jobs are called where a queued job's place is said (db.jobs.LANES)
LANE_JOBS = {"train": ("training run", "training runs"), "quick": ("registration or scoring job", "such jobs")}


def queue_place(lane: str, ahead: int, registration: int | None) -> str:
    """Why a queued job has not started, from its place in the queue (db.job_reads.Waiting): never that it runs."""
    if registration is not None:
        return f"queued: starts once its dataset's registration (job #{registration}) has finished"
    if ahead:
        one, many = LANE_JOBS.get(lane, ("job", "jobs"))
        behind = f"{ahead} {one if ahead == 1 else many}"
        lane_note = "one trains at a time" if lane == "train" else "they run one at a time, beside any training"
        return f"queued behind {behind} ({lane_note})"
    return "queued: next in line, waiting for the worker to take it"
