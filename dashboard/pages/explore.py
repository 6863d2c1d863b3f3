"""Explore: a run's 2-D projection of both contexts (the paper's Figure 1), coloured as you choose, with
alignment lines; a box or lasso around points shows their thumbnails and gives them all one verdict in one
click; pick one to see why it was flagged."""

from __future__ import annotations

import streamlit as st

from dashboard import auth, charts, point_budget, projection_chart, region, results, reviews, runs, settings, widgets
from dashboard.outbox import Outbox, VerdictBatch

st.title("Explore")
st.caption(
    "Circles are images, diamonds their context images, projected together. For normal samples the lines "
    "joining the two run parallel; anomalies break the pattern. Drag a box or a lasso to select."
)

outbox = reviews.outbox()  # shared with the Review page: what waits for the database is retried here too
outbox.flush()

succeeded = widgets.require_runs(runs.listing(status="succeeded"))

controls = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
with controls[0]:
    job_id = widgets.run_picker(succeeded, key="explore_run")
assert job_id is not None
method = controls[1].radio("Projection", results.projection_methods(), horizontal=True, key="explore_method")
color_by = controls[2].selectbox(
    "Colour by", list(projection_chart.COLOR_BY), format_func=lambda c: charts.SCORES.get(c, c), key="explore_color"
)
lines = controls[3].toggle(
    "Lines", key="explore_lines", help="Alignment lines: join each image to its context image (the paper's Figure 1)."
)

points = results.projection_points(job_id, method)
if points.empty:
    st.warning(f"This run has no {method.upper()} projection; try the other one.", icon=":material/warning:")
    st.stop()
shown = point_budget.drawn_points(points)  # past the budget: the top anomalies and a seeded spread
line_points = point_budget.line_points(shown)
thinned = len(shown) < len(points)
figure = projection_chart.projection_scatter(
    shown, color_by, alignment_lines=lines, line_points=line_points, density=points if thinned else None
)
event = st.plotly_chart(
    figure,
    key=f"explore_chart_{job_id}_{method}",
    on_select="rerun",
    selection_mode=("box", "lasso", "points"),
    width="stretch",
    config={"displaylogo": False},
)
top = min(point_budget.TOP_ANOMALIES, len(shown))
drawn_note = (
    f" · {len(shown):,} drawn: the {top} most anomalous and a spread of the rest, over a grey density of them all"
    if thinned
    else ""
)
few_lines = lines and len(shown) > point_budget.LINE_BUDGET
lines_note = f" · lines for the {point_budget.LINE_BUDGET} most anomalous" if few_lines else ""
st.caption(f"{len(points):,} samples{drawn_note}{lines_note} · {runs.run_caption(job_id)}")

picked = results.selected_sample_ids(event)
if thinned:  # a box or lasso takes every sample inside it, drawn or not (dashboard/region.py)
    picked = list(dict.fromkeys([*picked, *region.enclosed_ids(points, event)]))
selected = results.most_anomalous_first(job_id, picked, method)
if not selected:
    st.caption("Draw a box or a lasso around points (chart toolbar, top right) to see their thumbnails here.")
    st.stop()


def give_all(verdict: str, sample_ids: tuple[int, ...], job_id: int, reviewer: str, box: Outbox) -> None:
    # A widget callback: the write is queued before any Streamlit call (see dashboard/outbox.py).
    box.add(VerdictBatch(sample_ids, job_id, verdict, reviewer))


# A fragment, so the click reruns only these controls; polls every second while a write waits for the database.
@st.fragment(run_every=1.0 if outbox.pending() else None)
def bulk_verdict(sample_ids: tuple[int, ...], verdicts: list[str], polling: bool) -> None:
    """One verdict for every selected sample, in one click; each keeps its note and its history."""
    pending = outbox.flush()
    with st.container(border=True, key="explore_bulk"):
        st.markdown(f"**Give all {len(sample_ids):,} selected samples one verdict**")
        widgets.verdict_buttons(
            verdicts,
            None,
            key="explore_bulk_verdict",
            on_pick=give_all,
            args=(sample_ids, job_id, auth.current_user(), outbox),
        )
        st.caption(
            "Saved at once with your name and the time, as a verdict per sample; each sample keeps its note, and "
            "earlier verdicts stay in its history. The verdict set is the one chosen on the Review page for this "
            "dataset."
        )
        for message in outbox.take_messages():
            st.toast(widgets.plain(message), icon=":material/check:" if message.startswith("Saved") else None)
        if pending and not polling:
            st.rerun()  # the click waits for the database: the whole page reruns to start the retries
        if pending:
            st.warning(
                f"Saving… {pending} click{'s' if pending > 1 else ''} waiting: {outbox.problem or 'not written yet'}. "
                "Retrying every second; nothing is lost.",
                icon=":material/sync:",
            )


stored = reviews.stored_verdict_set(job_id)
verdicts = stored or widgets.verdict_set_default(settings.default_verdicts())
bulk_verdict(tuple(selected), verdicts, bool(outbox.pending()))

shown = selected[: results.SELECTION_LIMIT]
more = f" · showing the {len(shown)} most anomalous" if len(selected) > len(shown) else ""
st.subheader(f"{len(selected):,} selected{more}")
grid = results.run_thumbnails(job_id, shown, method)
widgets.thumbnail_grid(grid["pngs"], grid["captions"], width=88)

if grid["ids"]:
    names = dict(zip(grid["ids"], grid["names"], strict=True))
    sample_id = st.selectbox("Open a sample", grid["ids"], format_func=names.get, key="explore_case")
    widgets.case_view(results.sample_case(job_id, int(sample_id), method))
