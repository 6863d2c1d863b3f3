"""Review: the ranked queue, most anomalous first, with a verdict and a note per sample saved at once;
a threshold chosen on the score histogram; filters; export of the reviewed or flagged list as CSV."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import (
    auth,
    charts,
    curation_list,
    datasets,
    formatting,
    gallery,
    results,
    review_list,
    reviews,
    runs,
    settings,
    triage,
    widgets,
)
from dashboard.outbox import Outbox


def review_outbox() -> Outbox:
    """This browser session's pending verdicts and notes; kept across reruns until each is stored."""
    if "review_outbox" not in st.session_state:
        st.session_state["review_outbox"] = Outbox(reviews.write_review)
    return st.session_state["review_outbox"]


st.title("Review")
st.caption(
    "Most anomalous first. A verdict is saved the moment you click it, a note when you press Enter or leave "
    "its field, each with your name and the time; earlier ones stay in the history. If the database is busy, "
    'what you clicked waits here, marked "saving…", and is saved as soon as it can be. ' + triage.SCORE_MEANING
)
outbox = review_outbox()
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
    verdicts = widgets.verdict_set(key="review_verdicts", default=settings.default_verdicts())

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
pages = max(1, -(-len(view) // page_size))
head = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
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
page = head[3].number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1, key="review_page")
rows = view.iloc[(page - 1) * page_size : page * page_size]


@st.dialog("Case", width="large")
def open_case(sample_id: int) -> None:
    widgets.case_view(results.sample_case(job_id, sample_id))


# The rows are a fragment: a click in them reruns only the rows. Streamlit queues such reruns behind the one
# in progress and keeps every click they carry, where a click that reruns the whole page stops the run in
# progress (server option runner.fastReruns) and a click whose callback had not started yet is dropped.
@st.fragment
def queue_rows(rows: pd.DataFrame, polling: bool) -> None:
    """One page of the queue: thumbnail, rank, score and where it stands, verdict buttons and note of each row."""
    ids = [int(i) for i in rows["sample_id"]]
    standing = reviews.current_reviews(ids)  # fresh on every rerun of the rows: each click shows at once
    pngs = datasets.thumbnails(ids)
    waiting = outbox.waiting_verdicts()
    for row in rows.itertuples():
        sample_id = int(row.sample_id)
        review = standing.get(sample_id)
        with st.container(border=True, key=f"review_row_{sample_id}"):
            cells = st.columns([1, 4, 4])
            if sample_id in pngs:
                cells[0].image(gallery.display(pngs[sample_id]), width=80)
            cells[1].markdown(
                f"**#{row.rank}** {widgets.plain(row.key)}" + (" · :red[flagged]" if row.flagged else "") + "  \n"
                f"{charts.SCORES[score]} {triage.score_value_text(score, getattr(row, score))} · "
                f"{triage.standing_text(getattr(row, score), reference)}  \n"
                f":gray[label {widgets.plain(row.label or '–')} · split {widgets.plain(row.split or '–')}]"
            )
            if cells[1].button(
                "Open case", key=f"review_open_{sample_id}", icon=":material/open_in_full:", type="tertiary"
            ):
                open_case(sample_id)
            with cells[2]:
                current = waiting.get(sample_id, review.verdict if review else None)
                widgets.verdict_buttons(
                    verdicts,
                    current,
                    key=f"review_verdict_{sample_id}",
                    on_pick=reviews.queue_verdict,
                    args=(sample_id, job_id, reviewer, outbox, f"review_note_{sample_id}"),
                )
                stored_note = (review.note if review else None) or ""
                st.text_input(
                    "Note",
                    value=stored_note,
                    key=f"review_note_{sample_id}",
                    placeholder="Note (saved when you press Enter or leave the field)",
                    label_visibility="collapsed",
                    on_change=reviews.queue_note,
                    args=(sample_id, stored_note, job_id, reviewer, outbox, f"review_note_{sample_id}"),
                )
                if sample_id in waiting:
                    st.caption(f"{widgets.plain(current)} · saving…")
                elif current:
                    st.caption(
                        f"{widgets.plain(current)} · {widgets.plain(review.reviewer)} · "
                        f"{formatting.when(review.reviewed_at)}"
                    )
    if outbox.pending() and not polling:
        st.rerun()  # a click here is waiting for the database: the whole page reruns to start the retries
    show_messages()


queue_rows(rows, bool(outbox.pending()))
