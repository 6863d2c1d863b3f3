"""Review: the ranked queue, most anomalous first, with a verdict and a note per sample saved at once;
a threshold chosen on the score histogram; filters; export of the reviewed or flagged list as CSV.

Why one page of about 440 lines: it is the page script Streamlit runs top to bottom, and its fragments (the
case under the cursor, the rows, the contact sheet) share the queue, the cursor and the outbox built above
them; what has a noun of its own already lives beside it (triage, keyboard, review_list, reviews, outbox).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import (
    auth,
    charts,
    curation_list,
    datasets,
    formatting,
    gallery,
    keyboard,
    queue_table,
    results,
    review_list,
    reviews,
    runs,
    settings,
    triage,
    widgets,
)
from dashboard.keyboard import Cursor
from dashboard.outbox import Outbox

st.title("Review")
st.caption(
    "Most anomalous first. A verdict is saved the moment you click it, a note when you press Enter or leave "
    "its field, each with your name and the time; earlier ones stay in the history (a case's Review history). "
    'If the database is busy, what you clicked waits here, marked "saving…", and is saved as soon as it can be. '
    "Keys: j / k next / previous case, 1, 2, 3 … its verdict (then the next case), n its note. " + triage.SCORE_MEANING
)
outbox = reviews.outbox()
outbox.flush()  # every rerun is a retry of what is still waiting


def show_messages() -> None:
    """What the outbox saved or refused since the last rerun, one toast each."""
    for message in outbox.take_messages():
        st.toast(widgets.plain(message), icon=":material/check:" if message.startswith("Saved") else None)


@st.fragment(run_every=1.0 if outbox.pending() else None)
def save_status(waiting: bool) -> None:
    """What was saved (toasts), and while writes wait for the database: how many, why, retried every second."""
    pending = outbox.flush() if waiting else len(outbox.pending())
    if waiting and not pending:
        st.rerun()  # everything is stored: redraw the queue from the database (its toasts come with it)
    show_messages()
    if pending:
        st.warning(
            f"Saving… {pending} click{'s' if pending > 1 else ''} waiting: {outbox.problem or 'not written yet'}. "
            "Retrying every second; nothing is lost if you keep working.",
            icon=":material/sync:",
        )


save_status(bool(outbox.pending()))

queue = st.segmented_control(
    "Queue", ["Ranked run", "Curation list"], default="Ranked run", key="review_queue",
    help="Ranked run: a run's scored images, most anomalous first. Curation list: the unreadable files, duplicates "
    "and near duplicates sent here from the Data page.",
)  # fmt: skip
if queue == "Curation list":
    curation_list.show(outbox, auth.current_user())
    st.stop()

succeeded = widgets.require_runs(runs.listing(status="succeeded"))

controls = st.columns([3, 1, 2])
with controls[0]:
    job_id = widgets.run_picker(succeeded, key="review_run")
assert job_id is not None
score = controls[1].radio(
    "Score", ["s_nnd", "s_lh"], format_func=charts.SCORES.get, horizontal=True, key="review_score",
    help="S_NND: distance to the nearest training image. S_LH: unlikeliness under a Gaussian of the training features.",
)  # fmt: skip
with controls[2]:
    if st.session_state.get("review_verdicts_run") != job_id:  # another run: show the set its dataset keeps
        st.session_state.pop("review_verdicts", None)
        st.session_state["review_verdicts_run"] = job_id
    verdicts = widgets.verdict_set(
        key="review_verdicts",
        default=settings.default_verdicts(),
        stored=reviews.stored_verdict_set(job_id),
        on_change=lambda chosen: reviews.store_verdict_set(job_id, chosen),
    )

with widgets.database_errors("read this run's scores"):
    table = review_list.review_table(job_id, score)
if table.empty:
    st.info("This run scored no images (its split may be empty); pick another run.")
    st.stop()
reference = results.reference_scores(job_id, score)
reviewer = auth.current_user()  # the signed-in user in team mode, else the sidebar's name

# ------------------------------------------------------------------ threshold
with st.container(border=True):
    st.markdown("**Threshold**")
    left, right = st.columns([1, 2])
    with left:
        modes = ["Share of training normals flagged", "Top count"]
        mode = st.radio("Set it by", modes if len(reference) else modes[1:], key="review_threshold_mode")
        if mode == modes[0]:
            share = st.number_input(
                "% of training normals above the threshold",
                min_value=0.0, max_value=50.0, value=2.0, step=0.5, key="review_threshold_share",
                help="The threshold sits at this upper percentile of the training normals' leave-one-out scores "
                "(2 % = the 98th percentile).",
            )  # fmt: skip
            threshold, flagged = triage.flag(table[score].to_numpy(), reference=reference, percentile=100 - share)
        else:
            count = st.number_input(
                "Flag the top", min_value=0, max_value=len(table), value=min(50, len(table)), step=1,
                key="review_threshold_count",
            )  # fmt: skip
            threshold, flagged = triage.flag(table[score].to_numpy(), count=int(count))
        st.metric(
            "Flagged",
            f"{int(flagged.sum()):,} of {len(table):,}",
            help="Scored samples above the threshold.",
        )
        if len(reference):
            share_above = triage.reference_share_above(reference, threshold)
            st.caption(
                f"Threshold {triage.score_value_text(score, threshold)}: "
                f"{share_above:.1f}% of the training normals score above it."
            )
    with right:
        st.plotly_chart(
            charts.threshold_histogram(table[score].to_numpy(), reference, threshold, int(flagged.sum())),
            key="review_histogram",
            width="stretch",
        )
table = table.assign(flagged=flagged)
flagged_ids = table.loc[table["flagged"], "sample_id"].to_numpy()

# ------------------------------------------------------------------ filters
filters = st.columns([3, 2, 3])
show = filters[0].segmented_control("Show", list(triage.SHOW), default="All", key="review_show")
chosen = filters[1].multiselect("Verdict", verdicts, key="review_verdict_filter")
low, high = float(table[score].min()), float(table[score].max())
score_range = filters[2].slider(
    "Score range", min_value=low, max_value=max(high, low + 1e-9), value=(low, max(high, low + 1e-9)),
    key=f"review_range_{job_id}_{score}", format="%.4f",
)  # fmt: skip
view = triage.filter_queue(table, show=show or "All", verdicts=chosen, score=score, score_range=score_range)

# ------------------------------------------------------------------ queue header, export
page_size = 20
head = st.columns([2, 2, 1], vertical_alignment="bottom")
head[0].markdown(f"**{len(view):,} samples**, most anomalous first")
what = head[1].selectbox(
    "Export",
    list(review_list.EXPORTS),
    key="review_export_what",
    help="With verdicts, notes, reviewer and time, scores, rank and percentile. The verdict filter applies.",
)
head[2].download_button(
    "Export CSV",
    data=lambda: review_list.export_csv(job_id, score, flagged_ids, what, chosen),
    file_name=f"run-{job_id}-{what.lower().replace(' ', '-')}.csv",
    mime="text/csv",
    on_click="ignore",
    icon=":material/download:",
    key="review_export",
)
if view.empty:
    st.info("No sample matches these filters.")
    st.stop()


def review_cursor() -> Cursor:
    """This browser session's place in the queue (the sample the keys act on); kept across reruns."""
    if "review_cursor" not in st.session_state:
        st.session_state["review_cursor"] = Cursor()
    return st.session_state["review_cursor"]


cursor = review_cursor()
# "n" puts the caret in the case's note; Enter or Esc there saves the note and gives the keys back.
st.html(keyboard.NOTE_KEYS_SCRIPT, unsafe_allow_javascript=True, width="content")


def note_input(field: str, stored: str, placeholder: str, args: tuple) -> None:
    """A note field, filled with the stored note when it is first drawn and from then on the reviewer's alone.

    The page never writes into a field the browser holds: a value pushed from here races the browser's own,
    and a click sent before the browser took the new value carries the old text back, which Streamlit reads as
    an edit of the field. That stored old notes again, and empty ones (12 stray note rows in the two-tab test,
    whose wait then ended before the last verdicts were written). `{field}_drawn` keeps what the field was drawn
    with, so a verdict can tell a note typed there from one left as drawn (reviews.queue_verdict)."""
    if field not in st.session_state:  # drawn anew (first time, or after it left the page): it shows `stored`
        st.session_state[f"{field}_drawn"] = stored
    st.text_input(
        "Note",
        value=stored,
        key=field,
        placeholder=placeholder,
        label_visibility="collapsed",
        on_change=reviews.queue_note,
        args=args,
    )
    drawn = st.session_state.get(f"{field}_drawn")
    if stored != drawn and st.session_state.get(field) == drawn:
        # The note changed elsewhere since this field was drawn (the case's own field, another tab) and nothing
        # was typed here: the field keeps what the browser holds, so the note as stored is shown under it.
        st.caption(f"Note now: {widgets.plain(stored) if stored else '(cleared)'}")


def judge_case(verdict: str, ids: list[int], job_id: int, reviewer: str, box: Outbox, at: Cursor) -> None:
    """The case's verdict buttons (keys 1, 2, 3 …): a verdict for the sample under the cursor when the key is
    handled, then the cursor moves on. Read from the cursor, not bound when the buttons were drawn: keys pressed
    faster than the page redraws act on the cases in turn, as the reviewer pressed them, where buttons bound to
    the drawn sample would give the next key's verdict to the case just judged. Plain Python before the write
    is queued (see reviews.queue_verdict)."""
    sample_id = at.sample_id
    if sample_id is None:
        return
    following = keyboard.next_after(ids, sample_id)
    field = f"review_triage_note_{sample_id}"
    reviews.queue_verdict(verdict, sample_id, job_id, reviewer, box, field, partial(at.moved_on, sample_id, following))


@st.dialog("Case", width="large")
def open_case(sample_id: int) -> None:
    widgets.case_view(results.sample_case(job_id, sample_id))


def verdict_and_note(sample_id: int, review: Any, waiting: dict) -> tuple[str | None, str]:
    """(the verdict a sample shows, its stored note): a verdict still on its way to the database wins over the
    stored one, so a click shows at once."""
    return waiting.get(sample_id, review.verdict if review else None), (review.note if review else None) or ""


def verdict_caption(sample_id: int, current: str | None, review: Any, waiting: dict) -> None:
    if sample_id in waiting:
        st.caption(f"{widgets.plain(current)} · saving…")
    elif current and review is not None:
        st.caption(
            f"{widgets.plain(current)} · {widgets.plain(review.reviewer)} · {formatting.when(review.reviewed_at)}"
        )


def triage_case(row: pd.Series, ids: list[int], review: Any, waiting: dict) -> None:
    """The sample under the cursor: its image, context image and nearest training images, its scores, and the
    verdict buttons and note that the keys press (one set on the page: a key presses every button bound to it)."""
    sample_id = int(row["sample_id"])
    position = ids.index(sample_id)
    with st.container(border=True, key="review_triage"):
        top = st.columns([6, 1, 1], vertical_alignment="center")
        top[0].markdown(
            f"**{position + 1:,} of {len(ids):,}** · rank #{row['rank']} · {widgets.plain(row['key'])}"
            + (" · :red[flagged]" if row["flagged"] else "")
        )
        top[1].button(
            "Previous", key="review_triage_previous", shortcut=keyboard.PREVIOUS, on_click=cursor.step,
            args=(ids, -1), disabled=position == 0, width="stretch",
        )  # fmt: skip
        top[2].button(
            "Next", key="review_triage_next", shortcut=keyboard.NEXT, on_click=cursor.step,
            args=(ids, 1), disabled=position == len(ids) - 1, width="stretch",
        )  # fmt: skip
        case = results.sample_case(job_id, sample_id)
        current, stored_note = verdict_and_note(sample_id, review, waiting)
        field = f"review_triage_note_{sample_id}"
        widgets.verdict_buttons(
            verdicts,
            current,
            key="review_triage_verdict",
            on_pick=judge_case,
            args=(ids, job_id, reviewer, outbox, cursor),
            shortcuts=True,
        )
        with st.container(key="review_triage_note"):
            note_input(
                field,
                stored_note,
                f"Note ({keyboard.NOTE} to type here; Enter or Esc saves it)",
                (sample_id, stored_note, job_id, reviewer, outbox, field),
            )
        verdict_caption(sample_id, current, review, waiting)
        st.caption("Keys: " + keyboard.keys_help(verdicts))
        widgets.case_view(case)
        if st.toggle(
            "Full resolution", key="review_triage_full",
            help="The original file at its own size: drag a box or scroll to zoom, double-click to see it whole.",
        ):  # fmt: skip
            full = results.full_image(sample_id)
            if isinstance(full, str):
                st.info(full)
            else:
                st.caption(f"{full.shape[1]:,} × {full.shape[0]:,} pixels")
                st.plotly_chart(
                    charts.zoomable_image(full), key="review_triage_full_image",
                    config={"scrollZoom": True, "displaylogo": False},
                )  # fmt: skip


# The queue is a fragment: a click or key in it reruns only the queue. Streamlit queues such reruns behind the
# one in progress and keeps every click they carry, where a click that reruns the whole page stops the run in
# progress (server option runner.fastReruns) and a click whose callback had not started yet is dropped.
@st.fragment
def queue(view: pd.DataFrame, polling: bool) -> None:
    """The case under the cursor, then a page of the queue (the cursor's when the page opens; turned by its
    buttons, never by the keys): thumbnail, rank, score and where it stands, verdict buttons and note of each
    row."""
    ids = [int(i) for i in view["sample_id"]]
    here = cursor.place(ids)
    if here is None:  # an empty view stopped the page earlier
        return
    position = ids.index(here)
    start = cursor.page_start(ids, page_size)  # stays put while the keys move the cursor
    rows = review_list.with_samples(view.iloc[start : start + page_size])  # keys and labels of these rows only
    shown = [int(i) for i in rows["sample_id"]]
    standing = reviews.current_reviews(shown)  # fresh on every rerun of the queue: each click shows at once
    pngs = datasets.thumbnails(shown)
    waiting = outbox.waiting_verdicts()  # sample id -> its verdict on its way to the database
    triage_case(review_list.with_samples(view.iloc[[position]]).iloc[0], ids, standing.get(here), waiting)
    pager = st.columns([4, 1, 1], vertical_alignment="center")
    off_page = "" if start <= position < start + len(rows) else f" · the case under the cursor is #{position + 1:,}"
    pager[0].caption(f"Samples {start + 1:,}–{start + len(rows):,} of {len(ids):,}{off_page}")
    pager[1].button(
        "Previous 20", key="review_page_previous", on_click=cursor.turn_page, args=(ids, page_size, -1),
        disabled=start == 0, width="stretch",
    )  # fmt: skip
    pager[2].button(
        "Next 20", key="review_page_next", on_click=cursor.turn_page, args=(ids, page_size, 1),
        disabled=start + page_size >= len(ids), width="stretch",
    )  # fmt: skip
    # The page's rows in a container of their own, keyed by the page: a page drawn anew, never the previous
    # page's note fields reused for other samples (a reused field sent its old sample an empty note).
    page = st.container(key=f"review_rows_{start}")
    for row in rows.itertuples():
        sample_id = int(row.sample_id)
        review = standing.get(sample_id)
        with page, st.container(border=True, key=f"review_row_{sample_id}"):
            cells = st.columns([1, 4, 4])
            if sample_id in pngs:
                cells[0].image(gallery.display(pngs[sample_id]), width=80)
            cells[1].markdown(
                ("▶ " if sample_id == here else "")
                + f"**#{row.rank}** {widgets.plain(row.key)}"
                + (" · :red[flagged]" if row.flagged else "")
                + "  \n"
                f"{charts.SCORES[score]} {triage.score_value_text(score, getattr(row, score))} · "
                f"{triage.standing_text(getattr(row, score), reference)}  \n"
                f":gray[label {widgets.plain(row.label or '–')} · split {widgets.plain(row.split or '–')}]"
            )
            if cells[1].button(
                "Open case", key=f"review_open_{sample_id}", icon=":material/open_in_full:", type="tertiary"
            ):
                open_case(sample_id)
            with cells[2]:
                current, stored_note = verdict_and_note(sample_id, review, waiting)
                field = f"review_note_{sample_id}"
                widgets.verdict_buttons(
                    verdicts,
                    current,
                    key=f"review_verdict_{sample_id}",
                    on_pick=reviews.queue_verdict,
                    args=(sample_id, job_id, reviewer, outbox, field),
                )
                note_input(
                    field,
                    stored_note,
                    "Note (saved when you press Enter or leave the field)",
                    (sample_id, stored_note, job_id, reviewer, outbox, field),
                )
                verdict_caption(sample_id, current, review, waiting)
    if outbox.pending() and not polling:
        st.rerun()  # a click here is waiting for the database: the whole page reruns to start the retries
    show_messages()


queue(view, bool(outbox.pending()))

# ------------------------------------------------------------------ contact sheet
SHEET_SIZES = (48, 96, 192)


@st.fragment
def contact_sheet(view: pd.DataFrame) -> None:
    """A stretch of the queue as a grid of thumbnails with position, rank and verdict: a curator scans a few
    hundred images for the plainly broken ones, then triages them above. One image list, drawn only while the
    toggle is on and outside the queue's fragment, so the keys never wait for it."""
    controls = st.columns(4, vertical_alignment="bottom")
    size = controls[0].selectbox("Thumbnails", SHEET_SIZES, key="review_sheet_size")
    first = controls[1].number_input(
        "From #", min_value=1, max_value=len(view), value=1, step=int(size), key="review_sheet_from",
        help="Queue position of the first thumbnail (1 = the most anomalous sample the filters keep).",
    )  # fmt: skip
    target = controls[2].number_input(
        "Open at #", min_value=1, max_value=len(view), value=1, step=1, key="review_sheet_target"
    )
    if controls[3].button("Move the cursor there", key="review_sheet_go", icon=":material/arrow_upward:"):
        cursor.go_to([int(i) for i in view["sample_id"]], int(target))
        st.rerun()  # the whole page: the case and its page of rows follow the cursor
    rows = view.iloc[int(first) - 1 : int(first) - 1 + int(size)]
    shown = [int(i) for i in rows["sample_id"]]
    pngs = datasets.thumbnails(shown)
    standing = reviews.current_reviews(shown)
    drawn, captions = [], []
    for position, row in enumerate(rows.itertuples(), start=int(first)):
        sample_id = int(row.sample_id)
        if sample_id not in pngs:
            continue
        verdict = standing[sample_id].verdict if sample_id in standing else None
        drawn.append(pngs[sample_id])
        marks = [f"{position:,}", f"rank #{row.rank}", *([verdict] if verdict else []), *(["flagged"] * row.flagged)]
        captions.append(" · ".join(marks))
    st.caption(
        f"Queue positions {int(first):,}–{int(first) + len(rows) - 1:,} of {len(view):,}"
        + (f" · {len(rows) - len(drawn):,} without a thumbnail" if len(drawn) < len(rows) else "")
    )
    widgets.thumbnail_grid(drawn, captions)  # escapes the captions: a verdict set's names are user text


if st.toggle(
    "Contact sheet", key="review_sheet",
    help="The queue as a grid of thumbnails, 48–192 at a time, with each one's queue position, rank and verdict.",
):  # fmt: skip
    contact_sheet(view)

if st.toggle(
    "Whole queue as a list", key="review_table",
    help="Every sample the filters keep in one scrolling table: position, rank, file, score, verdict and note. "
    "Pick a row to put the cursor on it.",
):  # fmt: skip
    queue_table.whole_queue(view, score, reference, cursor)
