"""Keyboard triage on the Review page: the sample under the cursor, and the keys that act on it.

j / k move to the next / previous sample, 1, 2, 3 … give the set's verdicts in order (and move on), n puts the
caret in the note (Enter or Esc there saves it and gives the keys back). The buttons' keys are Streamlit's own
(`st.button(shortcut=...)`, ignored while typing in a field); "n" and leaving the note are a few lines of
JavaScript (NOTE_KEYS_SCRIPT), as Streamlit binds keys to buttons only.

The keys act on the cursor from inside widget callbacks, where any
`st.*` call or session-state read may cut the callback off when a newer key press has arrived (see
dashboard/outbox.py). So the cursor is a plain object kept in session state and handed to the callbacks
through their args; moving it is plain Python.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from dashboard.widgets import plain, verdict_key


class Cursor:
    """The sample a reviewer is looking at, by id; None until the page places it on the queue's first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sample_id: int | None = None
        self._page_first: int | None = None  # the first sample of the page of rows shown; None: the cursor's page

    def page_start(self, ids: Sequence[int], size: int) -> int:
        """Where the page of rows shown starts in `ids`: kept while the cursor moves, so a key never redraws
        the rows under the reviewer's mouse (a click on a row that a rerun has removed reaches a button
        Streamlit no longer knows, and is dropped). The cursor's page at first, after turn_page, or when the
        page's first sample left the queue (a filter)."""
        with self._lock:
            ids = list(ids)
            if self._page_first in ids:  # on a page boundary: a filter that drops samples before it moves it
                return ids.index(self._page_first) // size * size
            here = ids.index(self.sample_id) if self.sample_id in ids else 0
            start = here // size * size
            self._page_first = int(ids[start]) if ids else None
            return start

    def turn_page(self, ids: Sequence[int], size: int, pages: int) -> None:
        """Show the page `pages` pages on (or back), the cursor on its first sample."""
        with self._lock:
            ids = list(ids)
            if not ids:
                return
            shown = ids.index(self._page_first) if self._page_first in ids else 0
            last = (len(ids) - 1) // size * size
            start = min(max(shown // size * size + pages * size, 0), last)
            self._page_first = self.sample_id = int(ids[start])

    def place(self, ids: Sequence[int]) -> int | None:
        """The cursor's sample if it is among `ids` (the queue in order), else the first of them; kept."""
        with self._lock:
            if self.sample_id not in ids:
                self.sample_id = int(ids[0]) if len(ids) else None
            return self.sample_id

    def step(self, ids: Sequence[int], offset: int) -> None:
        """Move `offset` places along `ids` (+1 = next, less anomalous), stopping at either end."""
        with self._lock:
            if not len(ids):
                return
            here = list(ids).index(self.sample_id) if self.sample_id in ids else 0
            self.sample_id = int(ids[min(max(here + offset, 0), len(ids) - 1)])

    def go_to(self, ids: Sequence[int], position: int) -> None:
        """Put the cursor on the sample at `position` (1 = the first of `ids`, clamped to the queue) and show its
        page of rows: the contact sheet's "Move the cursor there"."""
        with self._lock:
            if not len(ids):
                return
            self.sample_id = int(ids[min(max(position, 1), len(ids)) - 1])
            self._page_first = None  # page_start finds the cursor's page

    def moved_on(self, judged: int, following: int | None) -> None:
        """After a verdict on `judged`: go to `following` (the next in the queue as shown), unless the cursor
        already left `judged` (a j or k pressed meanwhile wins)."""
        with self._lock:
            if following is not None and self.sample_id in (judged, None):
                self.sample_id = int(following)


def next_after(ids: Sequence[int], sample_id: int) -> int | None:
    """The sample after `sample_id` in `ids`; None at the end of the queue or when it is not in it."""
    ids = list(ids)
    if sample_id not in ids or ids.index(sample_id) + 1 == len(ids):
        return None
    return int(ids[ids.index(sample_id) + 1])


NEXT, PREVIOUS, NOTE = "j", "k", "n"

# Runs once per browser tab (st.html with JavaScript is not sandboxed; the guard keeps one listener however
# often the page reruns). It finds the note by its container's key class, `st-key-review_triage_note`.
NOTE_KEYS_SCRIPT = """<script>
(() => {
  if (window.con2NoteKeys) return;
  window.con2NoteKeys = true;
  const typing = (el) => !!el && (["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName) || el.isContentEditable);
  document.addEventListener("keydown", (event) => {
    const note = document.querySelector(".st-key-review_triage_note input");
    if (!note) return;
    if (event.key === "NOTE_KEY" && !event.ctrlKey && !event.metaKey && !event.altKey && !typing(event.target)) {
      event.preventDefault();
      note.focus();
    } else if ((event.key === "Enter" || event.key === "Escape") && event.target === note) {
      setTimeout(() => note.blur(), 0);  // after Streamlit's own handler has taken the value
    }
  });
})();
</script>""".replace("NOTE_KEY", NOTE)


def keys_help(verdicts: list[str]) -> str:
    """The keys in one line, for under the buttons: "1 anomaly · 2 normal · … · j next · k previous · n note"."""
    given = [f"`{verdict_key(n)}` {plain(v)}" for n, v in enumerate(verdicts, start=1)]
    moves = [f"`{NEXT}` next", f"`{PREVIOUS}` previous", f"`{NOTE}` note (Enter or Esc: save, back to keys)"]
    return " · ".join([*given, *moves])
