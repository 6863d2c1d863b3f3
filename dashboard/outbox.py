"""Verdicts and notes on their way to the database: one browser session's review writes, in click order.

A click must never be lost. Streamlit stops a running script, and a widget callback inside it, at its next
`st.*` call or session-state access as soon as the browser sends another click; a callback that touches
Streamlit before it writes can be cut off there and its click is gone (one click a second lost 11 of 50).
So the review page's callbacks hand their write to `Outbox.add`, which is plain Python: it queues the write
and tries it at once, before anything can interrupt it. What cannot be written yet (the database locked by
another program, a server that does not answer) stays queued, in order, and is retried on the next rerun and
every second by the page's status fragment until it is saved; the page shows it as "saving…" meanwhile.

Each write carries the time of its click. Written again after an error whose outcome was unclear, it is
found by that time and not stored twice (`db.reviews.add_review(at=...)`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from db.models import utcnow
from db.session import DatabaseError, DatabaseLocked

log = logging.getLogger(__name__)

RETRY_S = 1.0  # after a failed write, nothing is tried for this long (each try may wait on a lock)


@dataclass(frozen=True)
class ReviewWrite:
    """One click: a verdict (with the note typed with it; None: the sample's note as stored when it is written)
    or a note alone (`verdict=None`)."""

    sample_id: int
    job_id: int | None  # the run it was seen in; None on the curation list
    verdict: str | None
    note: str | None
    reviewer: str
    clicked_at: datetime = field(default_factory=utcnow)  # UTC; stored as the review's time

    def describe(self) -> str:
        return f"{self.verdict} for sample {self.sample_id}" if self.verdict else f"the note on sample {self.sample_id}"

    def verdicts(self) -> dict[int, str]:
        return {self.sample_id: self.verdict} if self.verdict is not None else {}


@dataclass(frozen=True)
class VerdictBatch:
    """One action giving many samples one verdict (a box or lasso on the Explore page), stored in one
    transaction; each sample keeps its note."""

    sample_ids: tuple[int, ...]
    job_id: int
    verdict: str
    reviewer: str
    clicked_at: datetime = field(default_factory=utcnow)

    def describe(self) -> str:
        return f"{self.verdict} for {len(self.sample_ids)} samples"

    def verdicts(self) -> dict[int, str]:
        return dict.fromkeys(self.sample_ids, self.verdict)


Pending = ReviewWrite | VerdictBatch


class Outbox:
    """Pending review writes of one browser session, oldest first, written through `write`.

    `write(item)` stores one item and returns a confirmation to show; it raises DatabaseError (locked,
    unreachable: retried later) or ValueError (refused, e.g. the sample was deleted: dropped and said so).
    Safe to call from several threads; writes leave in the order they were added.
    """

    def __init__(self, write: Callable[[Pending], str]) -> None:
        self._write = write
        self._lock = threading.RLock()
        self._queue: list[Pending] = []
        self._messages: list[str] = []  # confirmations and refusals not yet shown
        self._notes: dict[int, str] = {}  # sample id -> the note last queued for it
        self._failed_at = -float("inf")  # time.monotonic() of the last failed try
        self.problem: str | None = None  # why the oldest pending write is still waiting, in one sentence

    def add(self, item: Pending) -> None:
        """Queue a click and try to write what is queued (unless a try failed less than RETRY_S ago)."""
        with self._lock:
            self._queue.append(item)
            if isinstance(item, ReviewWrite) and item.note is not None:  # None: the stored note stays
                self._notes[item.sample_id] = item.note  # a verdict carries the whole note too
            self.flush()

    def flush(self) -> int:
        """Write the queued items in order until one fails; returns how many are still pending.

        Within RETRY_S of a failed try nothing is tried (each try may wait on a lock), so the reruns that
        follow a click do not each wait again."""
        with self._lock:
            if time.monotonic() - self._failed_at < RETRY_S:
                return len(self._queue)
            while self._queue:
                item = self._queue[0]
                try:
                    message = self._write(item)
                except ValueError as error:  # refused for good: retrying cannot help
                    self._queue.pop(0)
                    self._messages.append(f"Not saved ({item.describe()}): {error}")
                    continue
                except DatabaseLocked:
                    self._failed(item, "the database is busy (another program is writing to it)")
                    break
                except DatabaseError as error:
                    log.warning("review write of %s failed: %s", item.describe(), error)
                    self._failed(item, "the database cannot be reached")
                    break
                except Exception:  # any other failure keeps the click; the details go to the log
                    log.exception("review write of %s failed", item.describe())
                    self._failed(item, "the database refused the write")
                    break
                self._queue.pop(0)
                self._messages.append(message)
                self.problem = None
            return len(self._queue)

    def _failed(self, item: Pending, reason: str) -> None:
        self._failed_at = time.monotonic()
        self.problem = reason
        log.info("review write of %s waits: %s", item.describe(), reason)

    def pending(self) -> list[Pending]:
        """The writes not yet stored, oldest first."""
        with self._lock:
            return list(self._queue)

    def waiting_verdicts(self) -> dict[int, str]:
        """Sample id → its newest verdict still on its way to the database (single clicks and batches alike)."""
        with self._lock:
            waiting: dict[int, str] = {}
            for item in self._queue:
                waiting.update(item.verdicts())
            return waiting

    def take_messages(self) -> list[str]:
        """Confirmations and refusals since the last call (each shown once)."""
        with self._lock:
            messages, self._messages = self._messages, []
            return messages

    def note(self, sample_id: int, stored: str) -> str:
        """The note this session last sent for a sample, else `stored` (what the database holds)."""
        with self._lock:
            return self._notes.get(sample_id, stored)
