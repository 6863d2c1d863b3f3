"""Evaluate, where labels exist: ROC curves with AUROC for S_NND and S_LH, score histograms by label, the
silhouette of the two context clusters; and other runs on the same dataset with the same normal class for
comparison (runs are picked within one such group: another normal class is another task)."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, formatting, results, runs, widgets

st.title("Evaluate")
st.caption(
    "Needs labels and a normal class: anomalous = every other label. AUROC 0.5 is chance, 1.0 perfect. "
    "The silhouette measures how cleanly the encoder separates images from their context images (> 0: apart)."
)

succeeded = runs.listing(status="succeeded", labelled_only=True)
if succeeded.empty:
    active = runs.listing(kinds=("train",))
    active = active[active["status"].isin(["queued", "running"])]
    widgets.require_runs(
        succeeded,
        f"No finished run with labels yet; {active['title'].iloc[0]} is {active['status'].iloc[0]}: its AUROC "
        "appears here once it has finished."
        if not active.empty
        else "No finished run with labels yet. On the Train page, pick a labelled dataset and one of its labels "
        "as the normal class, and train: its AUROC and ROC appear here once it has finished.",
    )

# Runs are compared only within one dataset and one normal class: an AUROC on another normal class measures
# another task, and one on another dataset other images.
groups = runs.comparison_groups(succeeded)
by_key = {group.key: group for group in groups}
shared = st.session_state.get(widgets.SHARED_RUN)
start = next((i for i, group in enumerate(groups) if shared in group.ids), 0)
if st.session_state.get("evaluate_group") not in by_key:
    st.session_state.pop("evaluate_group", None)  # its group is gone: start from the shared run's
group = by_key[
    st.selectbox(
        "Dataset and normal class",
        list(by_key),
        index=start,
        format_func=lambda key: by_key[key].title,
        key="evaluate_group",
        help="Runs are evaluated and compared only with runs on the same dataset and the same normal class.",
    )
]
in_group = succeeded[succeeded["id"].isin(group.ids)]
# a picker per group: one widget whose options change under it can keep showing a run of the previous group
job_id = widgets.run_picker(in_group, key=f"evaluate_run_{group.key}")
assert job_id is not None
evaluation = results.evaluation(job_id)
metrics = st.columns(5)
metrics[0].metric("AUROC S_NND", formatting.number(evaluation["auroc_nnd"]))
metrics[1].metric("AUROC S_LH", formatting.number(evaluation["auroc_lh"]))
metrics[2].metric(
    "AUROC raw pixels",
    formatting.number(evaluation["auroc_pixels"]),
    help="Nearest neighbour on raw pixels, no training: the floor. A run below it did not pay off.",
)
metrics[3].metric(
    "Silhouette", formatting.number(evaluation["silhouette"]), help="Of the two context clusters (App. E.4)."
)
metrics[4].metric("Normal / anomalous", f"{evaluation['normal']:,} / {evaluation['anomalous']:,}")

left, right = st.columns(2)
with left:
    st.subheader("ROC")
    st.plotly_chart(charts.roc_curves(evaluation["scores"]), key="evaluate_roc", width="stretch")
with right:
    st.subheader("Scores by label")
    score = st.radio("Score", ["s_nnd", "s_lh"], format_func=charts.SCORES.get, horizontal=True, key="evaluate_score")
    by = st.radio(
        "Group by", ["label", "kind"], format_func={"label": "label", "kind": "normal / anomalous"}.get,
        horizontal=True, key="evaluate_by",
    )  # fmt: skip
    st.plotly_chart(charts.score_histograms(evaluation["scores"], score, by), key="evaluate_hist", width="stretch")

st.subheader("Compare with other runs on the same data and normal class")
others = [i for i in group.ids if i != job_id]
titles = dict(zip((int(i) for i in in_group["id"]), in_group["title"], strict=True))
if not others:
    st.caption(
        "No other finished run on this dataset with this normal class: train an ablation (context_only, "
        "content_only), SimCLR, or a classical reference (pixels_knn, pixels_pca_knn, pixels_iforest) with it."
    )
else:
    picked = st.multiselect(
        "Runs", others, default=others[:3], format_func=titles.get, key=f"evaluate_compare_{group.key}_{job_id}"
    )
    compare_score = st.radio(
        "Score", ["s_nnd", "s_lh"], format_func=charts.SCORES.get, horizontal=True, key="evaluate_compare_score"
    )
    shown = [job_id, *picked]
    frames = results.roc_frames(shown, titles=titles, scores={job_id: evaluation["scores"]})
    names = [titles[i] for i in shown]
    st.plotly_chart(
        charts.roc_comparison(frames, compare_score, runs=names), key="evaluate_roc_compare", width="stretch"
    )
    for name, why in charts.roc_gaps(frames, names).items():  # said in words too, not only in the legend
        st.caption(f"{widgets.plain(name)}: no ROC curve, {why}.")
