"""Review: the ranked queue, most anomalous first, with a verdict and a note per sample saved at once;
a threshold chosen on the score histogram; filters; export of the reviewed or flagged list as CSV."""

from __future__ import annotations

import streamlit as st

from dashboard import auth, charts, data, gallery, triage, widgets

st.title("Review")
st.caption(
    "Most anomalous first. A verdict is saved the moment you click it, a note when you press Enter or leave "
    "its field, each with your name and the time; earlier ones stay in the history. The percentile compares "
    "a score with the training normals' "
    "own leave-one-out scores."
)

runs = widgets.require_runs(data.runs(status="succeeded"))

controls = st.columns([3, 1, 2])
with controls[0]:
    job_id = widgets.run_picker(runs, key="review_run")
assert job_id is not None
score = controls[1].radio(
    "Score", ["s_nnd", "s_lh"], format_func=charts.SCORES.get, horizontal=True, key="review_score",
    help="S_NND: distance to the nearest training image. S_LH: unlikeliness under a Gaussian of the training features.",
)  # fmt: skip
with controls[2]:
    verdicts = widgets.verdict_set(key="review_verdicts", default=data.default_verdicts())

table = data.review_table(job_id, score)
if table.empty:
    st.info("This run scored no images (its split may be empty); pick another run.")
    st.stop()
reference = data.reference_scores(job_id, score)
reviewer = auth.current_user()  # the signed-in user in team mode

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
            st.caption(f"Threshold {threshold:.4f}: {share_above:.1f}% of the training normals score above it.")
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
    list(data.EXPORTS),
    key="review_export_what",
    help="With verdicts, notes, reviewer and time, scores, rank and percentile. The verdict filter applies.",
)
head[2].download_button(
    "Export CSV",
    data=lambda: data.export_csv(job_id, score, flagged_ids, what, chosen),
    file_name=f"run-{job_id}-{what.lower().replace(' ', '-')}.csv",
    mime="text/csv",
    on_click="ignore",
    icon=":material/download:",
    key="review_export",
)
page = head[3].number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1, key="review_page")
rows = view.iloc[(page - 1) * page_size : page * page_size]
pngs = data.thumbnails([int(i) for i in rows["sample_id"]])


def save_verdict(sample_id: int, verdict: str) -> None:
    note = (st.session_state.get(f"review_note_{sample_id}") or "").strip()
    st.toast(data.record_verdict(sample_id, job_id, verdict, note, reviewer))
    st.session_state[f"review_saved_note_{sample_id}"] = note


def save_note(sample_id: int, stored: str) -> None:
    # The note alone: a new row without a verdict, so the verdict (if any) stays as it was. Skipped when
    # the note is what is stored already (a verdict clicked in the same rerun saved it with the verdict).
    note = (st.session_state.get(f"review_note_{sample_id}") or "").strip()
    if note == st.session_state.get(f"review_saved_note_{sample_id}", stored):
        return
    st.toast(data.record_verdict(sample_id, job_id, None, note, reviewer))
    st.session_state[f"review_saved_note_{sample_id}"] = note


@st.dialog("Case", width="large")
def open_case(sample_id: int) -> None:
    widgets.case_view(data.sample_case(job_id, sample_id))


for row in rows.itertuples():
    sample_id = int(row.sample_id)
    with st.container(border=True, key=f"review_row_{sample_id}"):
        cells = st.columns([1, 4, 4])
        if sample_id in pngs:
            cells[0].image(gallery.display(pngs[sample_id]), width=80)
        cells[1].markdown(
            f"**#{row.rank}** `{row.key}`" + (" · :red[flagged]" if row.flagged else "") + "  \n"
            f"{charts.SCORES[score]} {getattr(row, score):.4f} · {triage.percentile_text(row.pct)}  \n"
            f":gray[label {row.label or '–'} · split {row.split or '–'}]"
        )
        if cells[1].button(
            "Open case", key=f"review_open_{sample_id}", icon=":material/open_in_full:", type="tertiary"
        ):
            open_case(sample_id)
        with cells[2]:
            current = row.verdict if isinstance(row.verdict, str) else None
            widgets.verdict_buttons(
                verdicts, current, key=f"review_verdict_{sample_id}", on_pick=lambda v, s=sample_id: save_verdict(s, v)
            )
            stored_note = row.note if isinstance(row.note, str) else ""
            st.text_input(
                "Note",
                value=stored_note,
                key=f"review_note_{sample_id}",
                placeholder="Note (saved when you press Enter or leave the field)",
                label_visibility="collapsed",
                on_change=save_note,
                args=(sample_id, stored_note),
            )
            if current:
                st.caption(f"{current} · {row.reviewer} · {data.when(row.reviewed_at)}")
