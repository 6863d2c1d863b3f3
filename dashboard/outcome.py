"""What a user's action (registering a dataset, queueing a run or a scoring job) led to."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    """What a user's action led to: a message to show, or an error saying what to fix."""

    message: str = ""
    error: str | None = None
    job_id: int | None = None
    dataset_id: int | None = None
    warnings: list[str] = field(default_factory=list)
