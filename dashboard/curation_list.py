"""The Review page's curation list, drawn: the files a curator sent from the Data page (unreadable files,
duplicates, near duplicates) with their reasons, a verdict and a note each, and the cleaned list's export.

Verdicts are ordinary reviews (`dashboard.reviews`), written through the Review page's outbox, so a verdict
given here also shows wherever else the sample appears, and the export decides by it.
"""

from __future__ import annotations

import streamlit as st

from dashboard import curation, datasets, formatting, gallery, reviews, settings, widgets
from dashboard.outbox import Outbox

PAGE_SIZE = 20
CURATION_VERDICTS = "remove / keep / relabel"  # a name of widgets.VERDICT_SETS


def show(outbox: Outbox, reviewer: str) -> None:
    """The curation list of one dataset, one bordered row per file, and the two CSV exports."""
    known = datasets.listing(registered_only=True)
    if known.empty:
        st.info("No registered dataset yet: register one on the Data page.")
        return
    ids = [int(i) for i in known["id"]]
    titles = dict(zip(ids, known["title"], strict=True))
    controls = st.columns([3, 2])
    dataset_id = controls[0].selectbox("Dataset", ids, format_func=lambda i: titles[i], key="review_curation_dataset")
    with controls[1]:
        # curating: remove / keep / relabel first (after CON2_VERDICTS' own set, where one is given)
        own = tuple(v.strip() for v in (settings.default_verdicts() or "").split(",") if v.strip())
        sets = {CURATION_VERDICTS: widgets.VERDICT_SETS[CURATION_VERDICTS], **widgets.VERDICT_SETS}
        if own and own not in sets.values():
            sets = {" / ".join(own): own, **sets}
        verdicts = list(sets[st.selectbox("Verdicts", list(sets), key="review_curation_verdicts")])
    items = curation.review_items(dataset_id)
    if items.empty:
        st.info("The curation list of this dataset is empty: on the Data page, select flagged files and add them.")
        return
    pages = max(1, -(-len(items) // PAGE_SIZE))
    head = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
    head[0].markdown(f"**{len(items):,} files** on the curation list, in the order they were added")
    _, default = curation.leave_out_choices(dataset_id, verdicts)
    head[1].download_button(
        "Kept files (CSV)", data=lambda: curation.kept_csv(dataset_id, default),
        file_name=f"dataset-{dataset_id}-kept.csv", mime="text/csv", on_click="ignore", icon=":material/download:",
        key="review_curation_kept",
        help="Leaves out unreadable files, all but one of each exact-duplicate group, and the verdicts "
        f"{', '.join(default)}.",
    )  # fmt: skip
    head[2].download_button(
        "Flagged (CSV)", data=lambda: curation.flagged_csv(dataset_id, default),
        file_name=f"dataset-{dataset_id}-flagged.csv", mime="text/csv", on_click="ignore",
        icon=":material/download:", key="review_curation_flagged",
    )  # fmt: skip
    page = head[3].number_input(f"Page (of {pages})", 1, pages, 1, key="review_curation_page")
    rows = items.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    pngs = datasets.thumbnails(rows["sample_id"].tolist())
    standing = reviews.current_reviews(rows["sample_id"].tolist())
    waiting = outbox.waiting_verdicts()
    for row in rows.itertuples():
        sample_id = int(row.sample_id)
        review = standing.get(sample_id)
        with st.container(border=True, key=f"review_curation_row_{sample_id}"):
            cells = st.columns([1, 4, 4])
            if sample_id in pngs:
                cells[0].image(gallery.display(pngs[sample_id]), width=80)
            else:
                cells[0].caption("no image")
            cells[1].markdown(f"**{widgets.plain(row.key)}**  \n{widgets.plain(row.reasons)}")
            with cells[2]:
                current = waiting.get(sample_id, review.verdict if review else None)
                widgets.verdict_buttons(
                    verdicts, current, key=f"review_curation_verdict_{sample_id}", on_pick=reviews.queue_verdict,
                    args=(sample_id, None, reviewer, outbox, f"review_curation_note_{sample_id}"),
                )  # fmt: skip
                stored_note = (review.note if review else None) or ""
                st.text_input(
                    "Note", value=stored_note, key=f"review_curation_note_{sample_id}", label_visibility="collapsed",
                    placeholder="Note (saved when you press Enter or leave the field)", on_change=reviews.queue_note,
                    args=(sample_id, stored_note, None, reviewer, outbox, f"review_curation_note_{sample_id}"),
                )  # fmt: skip
                if sample_id in waiting:
                    st.caption(f"{widgets.plain(current)} · saving…")
                elif current:
                    who = f"{widgets.plain(review.reviewer)} · {formatting.when(review.reviewed_at)}"
                    st.caption(f"{widgets.plain(current)} · {who}")
