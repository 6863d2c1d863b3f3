"""The Review queue as one scrolling table: every sample the filters keep, with its position, rank, file, score,
standing and verdict; picking a row puts the keyboard cursor (and the case view) on that sample.

The page's rows show 20 samples at a time with their controls; the contact sheet a few hundred thumbnails. This
is the third view a screening day needs: the whole list, to scroll through and jump. Streamlit's data grid draws
only the rows in sight, so 100,000 rows scroll as smoothly as 100; the files' names are read for the whole view,
which is why the table is drawn only while its toggle is on.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import review_list, triage
from dashboard.keyboard import Cursor

ACTED = "review_table_acted"  # the row selection the cursor last followed, so a rerun does not move it again


SCORE_COLUMNS = {"s_nnd": "S_NND, cosine distance", "s_lh": "S_LH, NLL"}
BELOW = "training normals below"
REACH = "reach (1 = the highest normal)"


def table_frame(view: pd.DataFrame, score: str, reference: np.ndarray | None) -> pd.DataFrame:
    """The rows the table shows, in queue order: position, rank, file, the score as the rows word it (a cosine
    distance, not the raw −0.95), how many training normals score below it and its reach — the distance above the
    normals' median in units of the highest normal's (above 1: beyond every normal; it does not saturate as a
    percentile does) — then flag, verdict and note."""
    rows = review_list.with_samples(view)
    values = rows[score].to_numpy(np.float64)
    below, reach, _ = triage.standing(values, reference)
    return pd.DataFrame(
        {
            "#": np.arange(1, len(rows) + 1),
            "rank": rows["rank"].to_numpy(),
            "file": rows["key"].astype("string").to_numpy(),
            SCORE_COLUMNS[score]: triage.readable_scores(score, values),
            BELOW: below,
            REACH: reach,
            "flagged": rows["flagged"].astype(bool).to_numpy(),
            "verdict": rows["verdict"].astype("string").fillna("").to_numpy(),
            "note": rows["note"].astype("string").fillna("").to_numpy(),
        }
    )


def view_key(view: pd.DataFrame) -> str:
    """A widget key that changes with the queue's order and content, so that a row picked in one view (other
    filters, the other score) is never read as a row of the next."""
    ids = np.ascontiguousarray(view["sample_id"].to_numpy(np.int64))
    return f"review_table_{zlib.crc32(ids.tobytes()):08x}_{len(ids)}"


@st.fragment
def whole_queue(view: pd.DataFrame, score: str, reference: np.ndarray | None, cursor: Cursor) -> None:
    """The table, and the cursor moved to the row a reviewer picks (once per pick)."""
    key = view_key(view)
    n = triage.finite_reference(reference).size  # counted, not sorted: the table sorts once, below
    event = st.dataframe(
        table_frame(view, score, reference),
        key=key,
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        height=420,
        column_config={
            SCORE_COLUMNS[score]: st.column_config.NumberColumn(format="%.3f" if score == "s_nnd" else "%.1f"),
            BELOW: st.column_config.NumberColumn(help=f"of the {n:,} training normals scored as references"),
            REACH: st.column_config.NumberColumn(
                format="%.2f",
                help="How far the score lies above the training normals' median, in units of the highest normal's "
                "distance from it: 1 = as high as the highest normal, 3 = three times as far.",
            ),
        },
    )
    picked = event.selection.rows if event is not None else []
    pick = (key, int(picked[0])) if picked else None
    if pick is not None and st.session_state.get(ACTED) != pick:
        st.session_state[ACTED] = pick
        cursor.go_to([int(i) for i in view["sample_id"]], pick[1] + 1)
        st.rerun()  # the whole page: the case and its page of rows follow the cursor
    st.caption(f"{len(view):,} samples · pick a row to open it above (the keys then go on from there)")
