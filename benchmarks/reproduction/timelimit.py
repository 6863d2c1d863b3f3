"""The time limit of one invocation: stop cleanly before an outer limit, without losing an epoch.

Training stops at the first step from which the next checkpoint could not be reached in time (the
steps since the last checkpoint would be lost anyway), scoring stops at the limit (it is redone on
resume; training is not), and no cell starts in the last `START_MARGIN_S` seconds. The same callback
prints the progress lines, on stderr.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

from engine.run import Phase
from engine.train import StepReport

START_MARGIN_S = 30.0  # with less time than this left, no new cell starts (loading alone can take that long)
PROGRESS_EVERY_S = 30.0  # a progress line on stderr at most this often
SAVE_MARGIN_S = 5.0  # time kept for writing a checkpoint when deciding whether the next one is reachable


def next_checkpoint_reachable(
    report: StepReport, checkpoint_every: int, session_steps: int, remaining_s: float, margin_s: float = SAVE_MARGIN_S
) -> bool:
    """Whether training can reach (and write) its next checkpoint in `remaining_s` at this session's pace.

    The engine writes a checkpoint after every `checkpoint_every`-th epoch and after the last one, once
    the step callback of the epoch's last step has returned. A step that ends such an epoch is always
    allowed to continue: its checkpoint is written right after. `session_steps`: steps this session has
    run, including this one (their mean duration is the pace).
    """
    per_epoch = report.total_steps // report.epochs
    target_epoch = min(math.ceil(report.epoch / checkpoint_every) * checkpoint_every, report.epochs)
    steps_left = target_epoch * per_epoch - report.step
    if steps_left <= 0:
        return True
    seconds_per_step = report.elapsed_s / max(session_steps, 1)
    return steps_left * seconds_per_step + margin_s <= remaining_s


class TimeLimit:
    """The progress callbacks of every cell of one invocation: stop before the limit without losing an epoch.

    `max_steps` stops (exactly like the time limit) after that many training steps in this process: a
    deterministic interruption for testing the resume path.
    """

    def __init__(self, limit_s: float, max_steps: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.deadline = clock() + limit_s if limit_s > 0 else math.inf
        self.max_steps = max_steps
        self.steps = 0
        self.stopped = False

    def remaining_s(self) -> float:
        return self.deadline - self.clock()

    def begin_cell(self, checkpoint_every: int) -> None:
        self.checkpoint_every = checkpoint_every
        self.session_steps = 0
        self.first_epoch: int | None = None  # epochs already done when this session started
        self.checkpointed_epoch: int | None = None
        self.last: StepReport | None = None
        self.logged = self.clock()

    def on_step(self, report: StepReport) -> bool:
        self.steps += 1
        self.session_steps += 1
        self.last = report
        if self.clock() - self.logged >= PROGRESS_EVERY_S or report.step == report.total_steps:
            self.logged = self.clock()
            log(
                f"  epoch {report.epoch}/{report.epochs} step {report.step}/{report.total_steps} "
                f"loss {report.loss:.3f} {report.images_per_s:.0f} img/s eta {report.eta_s:.0f} s"
            )
        if self.first_epoch is None:
            self.first_epoch = (report.step - 1) // (report.total_steps // report.epochs)
        out_of_steps = self.max_steps is not None and self.steps >= self.max_steps
        if out_of_steps or not next_checkpoint_reachable(
            report, self.checkpoint_every, self.session_steps, self.remaining_s()
        ):
            self.stopped = True
            return False
        if report.epoch_end and (report.epoch % self.checkpoint_every == 0 or report.epoch == report.epochs):
            self.checkpointed_epoch = report.epoch
        return True

    def on_scoring(self, done: int, total: int) -> bool:
        if self.remaining_s() <= 0:
            self.stopped = True
            return False
        return True

    def on_progress(self, event: StepReport | Phase) -> bool:
        """engine.run's one callback: a training step, or the progress of loading or scoring."""
        if isinstance(event, StepReport):
            return self.on_step(event)
        if event.name == "scoring":
            return self.on_scoring(event.done, event.total)
        return True

    def session(self, epochs: int, trained: bool) -> dict[str, Any]:
        """What this cell's session did, for its sessions.json: the epochs it trained and its own time.

        Its own time only: a resumed run's `TrainedModel.wall_s` also counts the earlier sessions, which
        the cell sums itself. `trained`: training reached its last epoch (else: stopped in training).
        """
        report = self.last if self.session_steps else None
        if trained:
            from_epoch, to_epoch = (epochs if self.first_epoch is None else self.first_epoch), epochs
        else:
            from_epoch, to_epoch = self.first_epoch, self.checkpointed_epoch or self.first_epoch
        return {
            "from_epoch": from_epoch,
            "to_epoch": to_epoch,
            "train_s": report.elapsed_s if report else 0.0,
            "images": report.images_per_s * report.elapsed_s if report else 0.0,
        }

    def no_checkpoint_warning(self) -> str | None:
        """Why reruns would make no progress, when this session stopped training before any checkpoint."""
        report = self.last
        if report is None or self.checkpointed_epoch is not None or self.max_steps is not None:
            return None
        per_step = report.elapsed_s / max(self.session_steps, 1)
        steps = self.checkpoint_every * report.total_steps // report.epochs
        return (
            f"no checkpoint fits this session: {self.checkpoint_every} epochs take "
            f"≈ {steps * per_step:.0f} s at {per_step:.1f} s/step; lower --checkpoint-every or raise "
            "--time-limit-s, or reruns will make no progress"
        )


def log(message: str) -> None:
    """A progress line on stderr (stdout holds the invocation's JSON summary)."""
    print(message, file=sys.stderr, flush=True)
